import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/dexar.js', import.meta.url));

/**
 * `dexar serve --model MODEL --port 0 --quiet` as a user starts it (the load bench and the demo's
 * end-to-end test); resolves with the process and the URL it printed once it listens.
 */
export function startServeProcess(model: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [bin, 'serve', '--model', model, '--port', '0', '--quiet'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk) => {
      out += chunk;
      const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)?.[0];
      if (url) resolve({ child, url });
    });
    child.once('exit', (code) => reject(new Error(`dexar serve exited with ${code} before listening`)));
  });
}
