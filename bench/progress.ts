// Progress lines with the time since the start, so that a long run shows where it is.

export class Progress {
  readonly #started = performance.now();

  constructor(private readonly write: (line: string) => void = (line) => process.stdout.write(`${line}\n`)) {}

  log(message: string): void {
    const seconds = Math.floor((performance.now() - this.#started) / 1000);
    const stamp = `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
    this.write(`[${stamp.padStart(6)}] ${message}`);
  }

  get elapsedSeconds(): number {
    return (performance.now() - this.#started) / 1000;
  }
}
