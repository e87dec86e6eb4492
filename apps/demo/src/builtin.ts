/**
 * The demo's built-in model and example: repository paths, copied into the
 * build under `builtin/` (never into git twice). Switch the model here.
 */
export const BUILTIN = {
  name: 'shapes-llava',
  model: 'models/shapes-llava',
  image: 'examples/shapes/example.png',
  /** Beside the image: `{ prompt, expectedAnswer }`, when the model's build wrote one. */
  example: 'examples/shapes/example.json',
  prompt: 'USER: <image>\nDescribe the image. ASSISTANT:',
} as const;

/** Used only while `BUILTIN.model` has no config.json (the shapes model not built yet); the build warns. */
export const BUILTIN_FALLBACK = {
  name: 'llava-tiny',
  model: 'fixtures/models/llava-tiny',
  image: 'fixtures/references/llava-tiny/case0/image.png',
  example: undefined,
  prompt: 'USER: <image>\nDescribe the image. ASSISTANT:',
} as const;

/** What the build writes to `builtin/manifest.json`: the app reads it at start. */
export interface BuiltinManifest {
  name: string;
  /** The repository folder it was copied from. */
  source: string;
  fallback: boolean;
  /** URLs relative to the page. */
  model: string;
  image: string;
  /** The repository file the image was copied from. */
  imageSource: string;
  prompt: string;
  expectedAnswer?: string;
  files: string[];
}
