import { existsSync, type FSWatcher, readFileSync, watch } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExplanationSchema } from '@dexar/core';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeShapesDataset } from '../../../packages/eval/test/helpers/dataset.js';
import { dexar, expectUsageError, llavaTiny, root, startDexar } from './helpers.js';

let dir: string;
let data: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dexar-cli-eval-'));
  data = await writeShapesDataset(join(dir, 'data'), 3);
});

describe('dexar eval', () => {
  it('writes records with progress and ETA on stderr, then a report', async () => {
    const out = join(dir, 'run');
    const run = await dexar(
      'eval',
      '--model',
      llavaTiny,
      '--dataset',
      data,
      '--methods',
      'dexar,random',
      '--metrics',
      'perturbation,segmentation,faithfulness',
      '--fractions',
      '0.5,1',
      '--out',
      out,
      '--shard',
      '0/1',
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^wrote 6 records to .*records-0-of-1\.jsonl \(3 samples computed, 0 already there/);
    expect(run.stderr).toMatch(/dexar eval: 3\/3 samples \(100%\), [\d.]+ samples\/s, ETA 0s/);
    const again = await dexar(
      'eval',
      '--model',
      llavaTiny,
      '--dataset',
      data,
      '--methods',
      'dexar,random',
      '--fractions',
      '0.5,1',
      '--out',
      out,
      '--quiet',
      '--report',
      join(dir, 'run-report'),
    );
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/wrote 0 records .*\(0 samples computed, 3 already there/);
    expect(again.stderr).toBe('');
    expect(again.stdout).toContain(
      `wrote ${join(dir, 'run-report', 'report.md')}, ${join(dir, 'run-report', 'curves.svg')}`,
    );
    const report = await dexar('eval', 'report', out);
    expect(report.code).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['curves.svg', 'records-0-of-1.jsonl', 'report.md']);
    const md = await readFile(join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/\| `dexar` \| 3 \|/);
    expect(md).toMatch(/\| `random` \| 3 \|/);
  });

  it('lets one of two runs started at once on one --out write, and refuses the other in one line', async () => {
    const out = join(dir, 'concurrent');
    await mkdir(out);
    const lock = join(out, 'records-0-of-1.jsonl.lock');
    // The run whose pid the lock names is stopped (SIGSTOP) there, holding the lock, so the other
    // run meets it however loaded the machine is: the test waits on file events, never on time.
    let watcher: FSWatcher | undefined;
    const stopped = new Promise<number>((resolve) => {
      watcher = watch(out, () => {
        const owner = existsSync(lock) ? readFileSync(lock, 'utf8') : '';
        const pid = Number.parseInt(owner, 10);
        if (owner !== `${pid} ${hostname()}`) return; // created but not written yet: the write is the next event
        watcher?.close();
        process.kill(pid, 'SIGSTOP');
        resolve(pid);
      });
    });
    const args = ['eval', '--limit', '4', '--out', out, '--quiet'];
    const runs = [startDexar(...args), startDexar(...args)];
    const bothEnded = Promise.all(runs.map((r) => r.done)).then(() => undefined);
    const pid = await Promise.race([stopped, bothEnded]).finally(() => watcher?.close());
    expect(pid, 'a run was stopped while holding the lock').toBeDefined();
    const winner = runs.find((r) => r.child.pid === pid);
    const loser = runs.find((r) => r.child.pid !== pid);
    if (!winner || !loser) throw new Error(`the lock names pid ${pid}, neither of the two runs`);
    try {
      expect(readFileSync(lock, 'utf8')).toBe(`${pid} ${hostname()}`); // stopped before it finished
      const refused = await loser.done;
      expectUsageError(
        refused,
        // "unknown" when the lock was read between its creation and its write
        /records-0-of-1\.jsonl is being written by another dexar eval \(pid (\d+ on \S+|unknown on unknown host)\): wait for it to finish, or use another --out/,
      );
      if (!/pid unknown/.test(refused.stderr)) expect(refused.stderr).toContain(`(pid ${pid} on ${hostname()})`);
    } finally {
      winner.child.kill('SIGCONT');
    }
    const written = await winner.done;
    expect(written.code).toBe(0);
    const count = Number(/^wrote (\d+) records .*\(4 samples computed, 0 already there/.exec(written.stdout)?.[1]);
    const lines = (await readFile(join(out, 'records-0-of-1.jsonl'), 'utf8')).trim().split('\n');
    const parsed = lines.map((line) => JSON.parse(line) as { kind: string; sample?: string; method?: string });
    expect(parsed.filter((r) => r.kind === 'run')).toHaveLength(1);
    const keys = parsed.filter((r) => r.kind !== 'run').map((r) => `${r.sample} ${r.method}`);
    expect(keys.length).toBeGreaterThan(4);
    expect(keys).toHaveLength(count);
    expect(new Set(keys).size).toBe(keys.length);
    expect(await readdir(out)).toEqual(['records-0-of-1.jsonl']);
  });

  it('prints its own help', async () => {
    const run = await dexar('eval', '--help');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('--shard i/N');
    expect((await dexar('--help')).stdout).toMatch(/eval +evaluate explanation methods/);
  });
});

describe('dexar explain --method', () => {
  const image = join(root, 'fixtures/references/llava-tiny/case0/image.png');
  it('gives another method in the same result schema', async () => {
    const out = join(dir, 'explain-attention');
    const run = await dexar(
      'explain',
      '--model',
      llavaTiny,
      '--image',
      image,
      '--target',
      'a red circle',
      '--method',
      'attention',
      '--json',
      '--quiet',
      '--out',
      out,
    );
    expect(run.code).toBe(0);
    const result = ExplanationSchema.parse(JSON.parse(run.stdout));
    expect(result.method).toBe('attention');
    expect(result.raw).toBeUndefined();
    expect(result.perTokenHeatmaps).toHaveLength(result.tokens.length);
    expect(JSON.parse(await readFile(join(out, 'result.json'), 'utf8')).method).toBe('attention');
  });

  it('gives logit-lens-image from the position lens of its own explain graph', async () => {
    const out = join(dir, 'explain-lens');
    const run = await dexar(
      'explain',
      '--model',
      llavaTiny,
      '--image',
      image,
      '--target',
      'a red circle',
      '--method',
      'logit-lens-image',
      '--raw',
      '--json',
      '--quiet',
      '--out',
      out,
    );
    expect(run.code).toBe(0);
    const result = ExplanationSchema.parse(JSON.parse(run.stdout));
    const raw = result.raw as NonNullable<typeof result.raw>;
    const lens = raw.positionLens as number[][][];
    const { start, end } = raw.imageKeys;
    expect(result.method).toBe('logit-lens-image');
    expect(lens).toHaveLength(result.tokens.length);
    expect(lens[0]).toHaveLength(raw.layers.length);
    // each token's map: the mean over the layers used of its logit lens at the image positions, min-max normalised
    for (const [n, perLayer] of lens.entries()) {
      const mean = Array.from({ length: end - start }, (_, j) => {
        return perLayer.reduce((sum, row) => sum + row[start + j], 0) / perLayer.length;
      });
      const lo = Math.min(...mean);
      const hi = Math.max(...mean);
      const want = mean.map((v) => (v - lo) / (hi - lo));
      const got = result.perTokenHeatmaps[n].flat();
      expect(Math.max(...got.map((v, j) => Math.abs(v - want[j])))).toBeLessThan(1e-5);
    }
  });

  it('refuses logit-lens-image for a cross-attention family', async () => {
    const run = await dexar(
      'explain',
      '--model',
      join(root, 'fixtures/models/florence2-tiny'),
      '--image',
      image,
      '--prompt',
      '<CAPTION>',
      '--target',
      'a red circle',
      '--method',
      'logit-lens-image',
      '--quiet',
      '--out',
      join(dir, 'explain-lens-florence'),
    );
    expectUsageError(run, /positionLens needs .* a decoder-only family \(this is florence2/);
  });

  it('refuses an unknown method before loading the model', async () => {
    const run = await dexar(
      'explain',
      '--model',
      join(dir, 'no-model-here'),
      '--image',
      image,
      '--method',
      'gradcam',
      '--quiet',
      '--out',
      join(dir, 'explain-gradcam'),
    );
    expectUsageError(run, /unknown method "gradcam"/);
  });
});

describe('dexar eval bad input: one line on stderr, exit 2', () => {
  const cases: [string, () => Promise<string[]>, RegExp][] = [
    [
      'a dataset folder that is neither VOC nor JSONL',
      async () => {
        const empty = join(dir, 'not-a-dataset');
        await mkdir(empty, { recursive: true });
        await writeFile(join(empty, 'readme.txt'), 'hello');
        return ['--dataset', empty];
      },
      /is neither a PASCAL VOC folder .* nor a JSONL dataset/,
    ],
    [
      'a mask of another size than its image',
      async () => {
        const d = await writeShapesDataset(join(dir, 'bad-mask'), 1);
        await writeFile(
          join(d, 'masks', '0000-0.png'),
          await sharp(Buffer.alloc(10 * 20), { raw: { width: 10, height: 20, channels: 1 } })
            .png()
            .toBuffer(),
        );
        return ['--dataset', d];
      },
      /mask .*0000-0\.png is 10 x 20 but its image .*0000\.png is 64 x 64/,
    ],
    ['an unknown method', async () => ['--dataset', data, '--methods', 'dexar,gradcam'], /unknown method "gradcam"/],
    ['an unknown metric', async () => ['--dataset', data, '--metrics', 'accuracy'], /unknown metric "accuracy"/],
    [
      'a shard spec like 3/2',
      async () => ['--dataset', data, '--shard', '3/2'],
      /--shard 3\/2: shard index 3 must be below/,
    ],
    ['a malformed shard spec', async () => ['--dataset', data, '--shard', 'first'], /--shard takes i\/N/],
    [
      'an unknown fill',
      async () => ['--dataset', data, '--fill', 'grey'],
      /--fill must be one of mean, black, blur, noise/,
    ],
    ['an unknown option', async () => ['--nope'], /Unknown option '--nope'/],
  ];
  it.each(cases)('%s', async (_, args, message) => {
    const out = join(dir, `bad-${Math.random().toString(36).slice(2)}`);
    const run = await dexar('eval', '--model', llavaTiny, '--out', out, '--quiet', ...(await args()));
    expectUsageError(run, message);
    expect(run.stdout).toBe('');
    expect(existsSync(out)).toBe(false); // nothing written
  });

  it('report without folders, or of a folder without records', async () => {
    const none = await dexar('eval', 'report');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/needs the run folders/);
    const empty = await dexar('eval', 'report', dir);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/no records-\*\.jsonl in/);
    expect(empty.stderr.trim().split('\n')).toHaveLength(1);
  });
});
