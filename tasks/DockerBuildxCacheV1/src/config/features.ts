import * as fs from 'fs';
import * as path from 'path';
import { isDirectory, isFile, lines } from './parsers';
import { InputError, type Inputs } from './source';
import { loc } from '../task/messages';
import { Input } from '../task/inputs';

// The inputs for BuildKit's build features: secrets, SSH forwarding, attestations, annotations,
// named build contexts and extra cache sources. Each is validated here into the flags' values, with
// paths made absolute, so that a bad line fails the task before anything runs.

/**
 * A build secret. `value`: written to a job-private file. `env`: read by buildx from the step's
 * environment, never written anywhere. `file`: a file BuildKit reads. The first two carry the value
 * so that it can be masked in the log; a file's content is read only to mask it.
 */
export type Secret =
  | { readonly kind: 'value'; readonly id: string; readonly value: string }
  | { readonly kind: 'env'; readonly id: string; readonly env: string; readonly value: string }
  | { readonly kind: 'file'; readonly id: string; readonly file: string };

const SECRET_ID = /^[A-Za-z0-9_.-]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const SSH_ID = /^[A-Za-z0-9_.-]+$/;
const ATTESTATION = /^(?:true|false|[a-z][a-z0-9-]*=[^,\s]+(?:,[a-z][a-z0-9-]*=[^,\s]+)*)$/i;
const ANNOTATION_TYPES = new Set(['manifest', 'index', 'manifest-descriptor', 'index-descriptor']);
const ANNOTATION_TYPE_LIST = /^[a-z-]+(?:\[[^\]\s]+\])?(?:,[a-z-]+(?:\[[^\]\s]+\])?)*$/;
const CONTEXT_NAME = /^[A-Za-z0-9][^\s=]*$/;
/** Named-context values that are not local folders: images, OCI layouts, other stages, URLs and git remotes. */
const REMOTE_CONTEXT = /^(?:[a-z][a-z0-9+.-]*:\/\/|target:|git@)/i;
const CACHE_TYPES = new Set(['registry', 'local', 'gha', 's3', 'azblob', 'inline']);
const REFERENCE = /^[a-z0-9][^\s,=]*$/;

/**
 * `secrets`: one a line. `ID=VALUE` is always a literal value, whatever the value holds, so a secret
 * variable can never be mistaken for anything else; `env:ID=NAME` reads the step's environment
 * variable NAME; `file:ID=PATH` reads a file. The line itself is never echoed in an error: its value
 * may be the secret.
 */
export function readSecrets(src: Inputs, env: (name: string) => string | undefined): Secret[] {
  const ids = new Set<string>();
  return lines(src.value(Input.secrets)).map((line, i): Secret => {
    const eq = line.indexOf('=');
    const head = eq < 0 ? line : line.slice(0, eq).trim();
    const colon = head.indexOf(':');
    const kind = colon < 0 ? 'value' : head.slice(0, colon);
    const id = colon < 0 ? head : head.slice(colon + 1);
    if (eq < 1 || !SECRET_ID.test(id) || (kind !== 'value' && kind !== 'env' && kind !== 'file'))
      throw new InputError(Input.secrets, loc('InputSecretInvalid', i + 1));
    if (ids.has(id)) throw new InputError(Input.secrets, loc('InputSecretDuplicate', id));
    ids.add(id);
    const rest = line.slice(eq + 1);
    if (kind === 'env') {
      const name = rest.trim();
      if (!ENV_NAME.test(name)) throw new InputError(Input.secrets, loc('InputSecretEnvName', i + 1, name));
      const value = env(name);
      if (value === undefined || value === '') throw new InputError(Input.secrets, loc('InputSecretEnvUnset', id, name, name, name));
      return { kind, id, env: name, value };
    }
    if (kind === 'file') {
      const file = path.resolve(src.workingDirectory, rest.trim());
      if (!isFile(file)) throw new InputError(Input.secrets, loc('InputSecretFileMissing', id, rest.trim(), file));
      return { kind, id, file };
    }
    if (rest === '') throw new InputError(Input.secrets, loc('InputSecretEmpty', id));
    if (/^\$\([A-Za-z0-9_.]+\)$/.test(rest)) throw new InputError(Input.secrets, loc('InputSecretUnexpanded', id, rest));
    return { kind, id, value: rest };
  });
}

/**
 * The strings to mask for each secret: a value or an environment variable's value whole, and a
 * file's lines of at least 8 characters (the agent masks within a line, so a file is masked line by
 * line; shorter lines, such as a lone brace, would mask too much of the log).
 */
export function secretValues(secrets: readonly Secret[], read: (file: string) => string = (f) => fs.readFileSync(f, 'utf8')): string[] {
  return secrets.flatMap((s) => {
    if (s.kind !== 'file') return [s.value];
    let content: string;
    try {
      content = read(s.file);
    } catch {
      return [];
    }
    return content
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l.length >= 8);
  });
}

/**
 * `ssh`: one forward a line, as `--ssh` takes it: `default` (or another id) for the step's
 * ssh-agent, which needs SSH_AUTH_SOCK, or `ID=PATH[,PATH…]` for private keys or agent sockets.
 */
export function readSsh(src: Inputs, env: (name: string) => string | undefined): string[] {
  return lines(src.value(Input.ssh)).map((line, i) => {
    const eq = line.indexOf('=');
    const id = (eq < 0 ? line : line.slice(0, eq)).trim();
    if (!SSH_ID.test(id)) throw new InputError(Input.ssh, loc('InputSshInvalid', i + 1, line));
    if (eq < 0) {
      if ((env('SSH_AUTH_SOCK') ?? '') === '') throw new InputError(Input.ssh, loc('InputSshNoAgent', id, id));
      return id;
    }
    const paths = line
      .slice(eq + 1)
      .split(',')
      .map((p) => p.trim());
    if (paths.some((p) => p === '')) throw new InputError(Input.ssh, loc('InputSshInvalid', i + 1, line));
    const resolved = paths.map((p) => {
      const full = path.resolve(src.workingDirectory, p);
      if (!fs.existsSync(full)) throw new InputError(Input.ssh, loc('InputSshKeyMissing', id, p, full));
      return full;
    });
    return `${id}=${resolved.join(',')}`;
  });
}

/** `provenance` and `sbom`: `true`, `false`, or attributes such as `mode=max`; empty leaves buildx's default. */
export function readAttestation(src: Inputs, name: typeof Input.provenance | typeof Input.sbom): string | undefined {
  const value = src.value(name);
  if (value === '') return undefined;
  if (!ATTESTATION.test(value)) throw new InputError(name, loc('InputAttestationInvalid', value));
  return /^(?:true|false)$/i.test(value) ? value.toLowerCase() : value;
}

/** `annotations`: one `[type[,type…]:]key=value` a line, as `--annotation` takes it. */
export function readAnnotations(src: Inputs): string[] {
  return lines(src.value(Input.annotations)).map((line, i) => {
    const eq = line.indexOf('=');
    const head = eq < 0 ? '' : line.slice(0, eq);
    const colon = head.indexOf(':');
    const types = colon < 0 ? '' : head.slice(0, colon);
    const typed = types !== '' && ANNOTATION_TYPE_LIST.test(types);
    const key = typed ? head.slice(colon + 1) : head;
    const known = !typed || types.split(',').every((t) => ANNOTATION_TYPES.has(t.replace(/\[.*\]$/, '')));
    if (eq < 1 || key === '' || /\s/.test(key) || !known)
      throw new InputError(Input.annotations, loc('InputAnnotationInvalid', i + 1, line));
    return line;
  });
}

/**
 * `buildContexts`: one `name=value` a line, as `--build-context` takes it. A value that is not an
 * image, an OCI layout, another stage, a URL or a git remote is a folder, made absolute.
 */
export function readBuildContexts(src: Inputs): string[] {
  return lines(src.value(Input.buildContexts)).map((line, i) => {
    const eq = line.indexOf('=');
    const name = eq < 0 ? '' : line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (!CONTEXT_NAME.test(name) || value === '') throw new InputError(Input.buildContexts, loc('InputBuildContextInvalid', i + 1, line));
    if (REMOTE_CONTEXT.test(value)) return `${name}=${value}`;
    const folder = path.resolve(src.workingDirectory, value);
    if (!isDirectory(folder)) throw new InputError(Input.buildContexts, loc('InputBuildContextMissing', name, value, folder));
    return `${name}=${folder}`;
  });
}

/** `cacheFrom`: extra cache sources, only imported: one CSV spec with a known `type=`, or an image reference, a line. */
export function readCacheFrom(src: Inputs): string[] {
  return lines(src.value(Input.cacheFrom)).map((line, i) => {
    if (!line.includes('=')) {
      if (!REFERENCE.test(line)) throw new InputError(Input.cacheFrom, loc('InputCacheFromInvalid', i + 1, line));
      return line;
    }
    const type = /(?:^|,)type=([^,]*)/.exec(line)?.[1];
    if (type === undefined || !CACHE_TYPES.has(type)) throw new InputError(Input.cacheFrom, loc('InputCacheFromInvalid', i + 1, line));
    return line;
  });
}
