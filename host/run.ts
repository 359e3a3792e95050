// The one command runner. Every external command (mount, losetup, mkfs...)
// goes through here: argv arrays, never a shell; a timeout on every call;
// stdout/stderr captured; failures carry the command and its output.

export interface RunOptions {
  /** Milliseconds before the command is killed. */
  timeoutMs?: number;
  /** Exit codes that are answers rather than failures (blkid's 2 = blank). */
  okExitCodes?: number[];
  /** Indices of argv elements that may hold secrets: shown as "<redacted>". */
  sensitiveArgs?: number[];
  /** Text fed to stdin; stdin is otherwise empty, so prompts read EOF. */
  input?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export const DEFAULT_TIMEOUT_MS = 60_000;

export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    readonly stdout: string,
    readonly timedOut: boolean,
  ) {
    const what = [command, ...args].join(' ');
    const why = timedOut ? 'timed out' : `exited with ${exitCode ?? 'a signal'}`;
    const output = (stderr || stdout).trim();
    super(`${what}: ${why}${output ? `: ${output}` : ''}`);
    this.name = 'CommandError';
  }
}

export function shownArgs(args: readonly string[], sensitive: readonly number[] = []): string[] {
  return args.map((a, i) => (sensitive.includes(i) ? '<redacted>' : a));
}

/** execa, loaded on the first command: a FlexVolume call such as init runs none and should not pay for it. */
let execaModule: Promise<typeof import('execa')> | undefined;

export async function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  execaModule ??= import('execa');
  const { execa } = await execaModule;
  const result = await execa(command, args, {
    timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    reject: false,
    input: opts.input ?? '',
    stripFinalNewline: true,
    env: { LC_ALL: 'C' },
  });
  const exitCode = result.exitCode ?? -1;
  const ok = [0, ...(opts.okExitCodes ?? [])];
  if (result.timedOut || !ok.includes(exitCode)) {
    // A command that could not start (not installed) has no output: say why.
    const spawnFailure = result.exitCode === undefined && !result.timedOut ? (result.cause as Error | undefined)?.message : undefined;
    throw new CommandError(
      command,
      shownArgs(args, opts.sensitiveArgs),
      result.exitCode,
      String(result.stderr || spawnFailure || ''),
      String(result.stdout ?? ''),
      Boolean(result.timedOut),
    );
  }
  return { stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? ''), exitCode };
}
