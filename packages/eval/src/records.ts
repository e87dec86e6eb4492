/**
 * The JSONL records of an evaluation run: one `run` header per shard file, then one `sample` record
 * per sample and method. Plain JSON, one object per line.
 */
import type { TokenRanking } from './metrics/faithfulness.js';
import type { SegmentationScores } from './metrics/segmentation.js';
import type { MetricName, PerturbationConfig, Shard } from './options.js';

export const RECORDS_VERSION = 1;

/** Everything that determines a record's numbers (a resumed or merged run must match it). */
export interface EvalConfig {
  /** Model folder as given, and the model's identity (SHA-256 of config.json, the decoder graph and the DEX-AR options). */
  model: string;
  modelKey: string;
  family: string;
  /** Dataset spec as given, and the number of samples it holds (after `limit`). */
  dataset: string;
  samples: number;
  limit: number | null;
  metrics: MetricName[];
  dexar: { layerIndex: number; topK: number; compat: 'official' | 'paper' };
  perturbation: PerturbationConfig;
  segmentation: { threshold: 'mean' | number };
  seed: number;
}

export interface RunHeader {
  kind: 'run';
  version: number;
  /**
   * Hash of `config` less the model's path, the sample count and `limit`: records of different
   * configurations never mix; a longer `--limit` or added methods extend a run.
   */
  configKey: string;
  config: EvalConfig;
  shard: Shard;
  methods: string[];
  started: string;
  host?: string;
}

export interface Curve {
  fractions: number[];
  /** Perplexity at each fraction. */
  ppl: number[];
  /** Normalised perplexity at each fraction. */
  nppl: number[];
  /** Trapezoid area under nppl over the fractions. */
  auc: number;
}

export interface WordScores extends SegmentationScores {
  word: string;
  /** Target token whose per-token map is scored (the word's first). */
  token: number;
}

export interface SampleRecord {
  kind: 'sample';
  sample: string;
  /** Position in the dataset (after `limit`), which decides the shard. */
  index: number;
  method: string;
  /** The sample's kind in the manifest (shapes: caption or question), when it has one. */
  group?: string;
  target: string;
  tokens: string[];
  perturbation?: { clean: number; removedAll?: number; positive: Curve; negative: Curve };
  segmentation?: { words: WordScores[]; sentence: SegmentationScores | null };
  faithfulness?: TokenRanking | null;
  /** Wall time: the shared explanation, this method's maps, its metrics. */
  seconds: { explain: number; method: number; perturbation?: number; segmentation?: number };
}

export type EvalRecord = RunHeader | SampleRecord;
