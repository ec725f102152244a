/**
 * The agent turns `##vso[…]` anywhere in a line, and `##[…]` formatting prefixes, into pipeline
 * commands. Build output is untrusted (a Dockerfile's RUN can print anything), so every `##` that
 * starts such a sequence gets a space: `# #vso[…]` still reads the same and commands nothing.
 */
const COMMAND_START = /##(?=(?:vso)?\[)/gi;

export function neutralise(line: string): string {
  return line.replace(COMMAND_START, '# #');
}
