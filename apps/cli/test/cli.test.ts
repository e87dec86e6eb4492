import { cp, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExplanationSchema } from '@dexar/core';
import { describe, expect, it } from 'vitest';
import { dexar, expectUsageError, llavaTiny, root } from './helpers.js';

const referenceCase = join(root, 'fixtures/references/llava-tiny/case0');

const tinyArgs = (out: string) => [
  '--model',
  llavaTiny,
  '--image',
  join(referenceCase, 'image.png'),
  '--out',
  out,
  '--quiet',
];

describe('dexar explain', () => {
  it('writes every output file and prints only the result JSON with --json', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dexar-cli-'));
    const reference = JSON.parse(await readFile(join(referenceCase, 'case.json'), 'utf8'));
    const run = await dexar(
      'explain',
      ...tinyArgs(out),
      '--prompt',
      reference.prompt,
      '--target',
      reference.target,
      '--json',
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const result = ExplanationSchema.parse(JSON.parse(run.stdout));
    expect(result.tokens).toEqual(reference.tokens);
    expect((await readdir(out)).sort()).toEqual(['grid.png', 'report.html', 'result.json', 'sentence.png', 'tokens']);
    expect(await readdir(join(out, 'tokens'))).toHaveLength(reference.tokens.length);
    expect(JSON.parse(await readFile(join(out, 'result.json'), 'utf8'))).toEqual(result);
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html).toContain('data:image/png;base64,');
    expect(html).not.toMatch(/<(script|img|link)[^>]+src="http/);
  });

  it('--stream prints each token with its weight as it is generated and writes the same files', async () => {
    const prompt = 'USER: <image>\nDescribe the image. ASSISTANT:';
    const out = await mkdtemp(join(tmpdir(), 'dexar-cli-'));
    const run = await dexar('explain', ...tinyArgs(out), '--prompt', prompt, '--max-new-tokens', '4', '--stream');
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    const result = ExplanationSchema.parse(JSON.parse(await readFile(join(out, 'result.json'), 'utf8')));
    expect(result.tokens.length).toBeGreaterThan(0);
    // one line per token, in order, before the summary: index, token, weight
    expect(lines.slice(0, result.tokens.length)).toEqual(
      result.tokens.map((t, n) => `${n}\t${JSON.stringify(t)}\t${result.tokenWeights[n].toFixed(3)}`),
    );
    expect(lines.at(-1)).toMatch(/^wrote \d+ files to /);
    expect((await readdir(out)).sort()).toEqual(['grid.png', 'report.html', 'result.json', 'sentence.png', 'tokens']);
    // (the numbers equal the teacher-forced pass: packages/explain/test/stream.test.ts)
  });

  it.each([
    [['--target', 'a red circle'], /--stream does not go with --target/],
    [['--strategy', 'stepwise'], /--stream does not go with --strategy/],
    [['--method', 'logit-lens-image'], /--stream does not go with --method logit-lens-image/],
  ])('--stream refuses %j with a one-line usage error', async (extra, message) => {
    const out = await mkdtemp(join(tmpdir(), 'dexar-cli-'));
    expectUsageError(await dexar('explain', ...tinyArgs(out), '--stream', ...extra), message);
  });

  it('reports progress on stderr', async () => {
    const out = await mkdtemp(join(tmpdir(), 'dexar-cli-'));
    const run = await dexar(
      'explain',
      ...tinyArgs(out).filter((a) => a !== '--quiet'),
      '--prompt',
      'USER: <image>\nDescribe the image. ASSISTANT:',
      '--target',
      'a red circle',
    );
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/dexar: load/);
    expect(run.stderr).toMatch(/dexar: explain/);
  });
});

describe('bad input: one line on stderr, exit 2 for usage errors', () => {
  const prompt = 'USER: <image>\nDescribe the image. ASSISTANT:';
  const cases: [string, () => Promise<string[]>, RegExp][] = [
    [
      'a missing model folder',
      async () => ['--model', '/no/such/model'],
      /model folder \/no\/such\/model does not exist/,
    ],
    ['a folder that is not a model', async () => ['--model', join(llavaTiny, 'onnx')], /has no config\.json/],
    [
      'a model type no adapter supports',
      async () => {
        const dir = await mkdtemp(join(tmpdir(), 'dexar-bert-'));
        await writeFile(join(dir, 'config.json'), '{"model_type": "bert"}');
        return ['--model', dir];
      },
      /model_type "bert", which no registered adapter supports/,
    ],
    [
      'an unreadable image',
      async () => {
        const file = join(await mkdtemp(join(tmpdir(), 'dexar-img-')), 'not-an-image.png');
        await writeFile(file, 'hello');
        return ['--model', llavaTiny, '--image', file];
      },
      /cannot decode the image .*give a PNG, JPEG or WebP file/,
    ],
    [
      'a missing image',
      async () => ['--model', llavaTiny, '--image', '/no/such.png'],
      /cannot read image \/no\/such\.png/,
    ],
    [
      'a prompt without placeholder',
      async () => ['--model', llavaTiny, '--prompt', 'Describe the image.'],
      /needs exactly one where the image goes/,
    ],
    ['an empty target', async () => ['--model', llavaTiny, '--prompt', prompt, '--target', ''], /the target is empty/],
    [
      'a layer index out of range',
      async () => ['--model', llavaTiny, '--layer-index', '9'],
      /layer index 9 is out of range for a model with 4 layers/,
    ],
    ['an unknown option', async () => ['--nope'], /Unknown option '--nope'/],
    ['a malformed number', async () => ['--top-k', 'two'], /--top-k takes an integer/],
    ['an unknown compat mode', async () => ['--compat', 'exact'], /--compat must be one of official, paper/],
    [
      'a Florence-2 task token the model does not know',
      async () => ['--model', join(root, 'fixtures/models/florence2-tiny'), '--prompt', '<SUMMARY>'],
      /<SUMMARY> is not a Florence-2 task this model knows/,
    ],
    [
      'an image placeholder in a PaliGemma prompt',
      async () => ['--model', join(root, 'fixtures/models/paligemma-tiny'), '--prompt', '<image>caption en'],
      /PaliGemma prompts carry no <image> placeholder/,
    ],
  ];
  it.each(cases)('%s', async (_, args, message) => {
    const out = await mkdtemp(join(tmpdir(), 'dexar-cli-'));
    const run = await dexar(
      'explain',
      '--image',
      join(referenceCase, 'image.png'),
      '--out',
      out,
      '--quiet',
      ...(await args()),
    );
    expectUsageError(run, message);
    expect(run.stdout).toBe('');
    expect(await readdir(out)).toEqual([]);
  });

  it('exits 1 with one line, and a stack only with --debug, for a decoder it cannot run', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-graph-'));
    await cp(llavaTiny, dir, { recursive: true });
    await cp(join(llavaTiny, 'onnx/embed_tokens.onnx'), join(dir, 'onnx/decoder_model_merged.onnx'));
    // generation opens the plain decoder (the explain path, which builds the explain graph first, is the next test)
    const run = await dexar('generate', '--model', dir, '--image', join(referenceCase, 'image.png'), '--quiet');
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(
      /dexar: error: .*\/onnx\/decoder_model_merged\.onnx has no past_key_values\.\{i\}\.key inputs: use a decoder_model_merged\.onnx exported with use_cache$/m,
    );
    const debug = await dexar(
      'generate',
      '--model',
      dir,
      '--image',
      join(referenceCase, 'image.png'),
      '--quiet',
      '--debug',
    );
    expect(debug.stderr.split('\n').length).toBeGreaterThan(2);
  });

  it('checks the decoder against the contract before building the explain graph on it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dexar-graph-'));
    await cp(llavaTiny, dir, { recursive: true });
    await cp(join(llavaTiny, 'onnx/embed_tokens.onnx'), join(dir, 'onnx/decoder_model_merged.onnx'));
    const run = await dexar(
      'explain',
      '--model',
      dir,
      '--image',
      join(referenceCase, 'image.png'),
      '--target',
      'a red circle',
      '--quiet',
    );
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(
      /dexar: error: .*\/onnx\/decoder_model_merged\.onnx has no past_key_values\.\{i\}\.key inputs/,
    );
  });
});
