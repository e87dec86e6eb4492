// Peak resident set of the current process, for the benchmarks that run each measurement in a
// child process. Linux only. getrusage's maxRSS (process.resourceUsage().maxRSS) is the wrong
// figure there: the kernel carries the parent's high-water mark into the child through fork and
// exec, so a child of a 1 GB bench process reports about 1 GB whatever it does (issue #16). VmHWM
// belongs to the address space, which exec replaces, and /proc/self/clear_refs resets it.
import { readFileSync, writeFileSync } from 'node:fs';

/** Restarts the high-water mark from the current resident set (`5` > /proc/self/clear_refs). */
export function resetPeakResident(): void {
  writeFileSync('/proc/self/clear_refs', '5');
}

/** VmHWM from /proc/self/status: the peak resident set since exec or the last reset, in bytes. */
export function peakResidentBytes(): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!match) throw new Error('no VmHWM in /proc/self/status: peak RSS is measured on Linux only');
  return Number(match[1]) * 1024;
}

/** VmHWM and VmRSS of another process (a server the bench started), in bytes: its peak and current resident set. */
export function residentOf(pid: number): { peak: number; current: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!match) throw new Error(`no ${name} in /proc/${pid}/status: resident sets are measured on Linux only`);
    return Number(match[1]) * 1024;
  };
  return { peak: field('VmHWM'), current: field('VmRSS') };
}
