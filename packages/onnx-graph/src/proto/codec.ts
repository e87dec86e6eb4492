import protobuf from 'protobufjs/light.js';
import { ONNX_DESCRIPTOR_JSON } from './onnx-proto.js';
import type { ModelProto } from './types.js';

let modelType: protobuf.Type | undefined;

/** The protobufjs type of `onnx.ModelProto`, built once from the embedded schema. */
function getModelType(): protobuf.Type {
  if (!modelType) {
    const root = protobuf.Root.fromJSON(JSON.parse(ONNX_DESCRIPTOR_JSON) as protobuf.INamespace);
    modelType = root.lookupType('onnx.ModelProto');
  }
  return modelType;
}

/** Decodes ModelProto bytes. Throws protobufjs errors on malformed input. */
export function decodeModelProto(bytes: Uint8Array): ModelProto {
  return getModelType().decode(bytes) as unknown as ModelProto;
}

/** Encodes a ModelProto (decoded or built from plain objects) to bytes. */
export function encodeModelProto(model: ModelProto): Uint8Array {
  return getModelType()
    .encode(model as unknown as protobuf.Message)
    .finish();
}
