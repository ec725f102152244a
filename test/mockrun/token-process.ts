import { spawn, type ChildProcessWithoutNullStreams } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/**
 * The token server (../token-server.ts) in a process of its own: MockTestRunner blocks this
 * process while the task runs, so a server in it could not answer.
 */
export class TokenProcess {
  base = '';
  private child?: ChildProcessWithoutNullStreams;
  // Not a tempDir(): those go after each test, and this one lives as long as the server.
  private readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dbxc-token-server-'));
  private readonly log = path.join(this.dir, 'requests.jsonl');

  async start(): Promise<void> {
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'token-server.js'), this.log]);
    this.child = child;
    this.base = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())));
  }

  stop(): void {
    this.child?.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Forgets the requests so far. */
  clear(): void {
    fs.rmSync(this.log, { force: true });
  }

  /** The paths requested since the last clear(), in order. */
  requests(): string[] {
    return fs.existsSync(this.log)
      ? fs
          .readFileSync(this.log, 'utf8')
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { path: string }).path)
      : [];
  }
}
