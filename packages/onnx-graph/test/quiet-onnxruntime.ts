// These tests open ONNX Runtime sessions directly, some to see them fail: keep its native log
// (expected errors, warnings about initializers the tests leave unused) out of the test output,
// as @dexar/runtime-node's backend does. The level is read when the first session starts.
import * as ort from 'onnxruntime-node';

ort.env.logLevel = 'fatal';
