import type { InputName } from '../task/inputs';
import { Input } from '../task/inputs';
import { loc } from '../task/messages';
import { InputError } from './source';

// The image-reference grammar (distribution's reference.go): tags, repository path components, the
// registry's domain, and the checks of imageName and a full reference against it.

export const TAG = /^[\w][\w.-]{0,127}$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN =
  /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d+)?$/;

/** A full reference, `repository[:tag]`, such as `myacr.azurecr.io/app:buildcache`. */
export function validateReference(input: InputName, ref: string): void {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  const [repository, tag] = colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, undefined];
  try {
    validateImageName(repository);
  } catch (err) {
    if (err instanceof InputError) throw new InputError(input, loc('InputReferenceInvalid', ref));
    throw err;
  }
  if (tag !== undefined && !TAG.test(tag)) throw new InputError(input, loc('InputReferenceInvalid', ref));
}

export function validateImageName(name: string): void {
  const parts = name.split('/');
  const last = parts[parts.length - 1] ?? '';
  if (name.includes('@') || last.includes(':')) throw new InputError(Input.imageName, loc('InputImageNameHasTag', name));
  const hasDomain = parts.length > 1 && /[.:]|^localhost$/.test(parts[0] ?? '');
  const domain = hasDomain ? parts.shift() : undefined;
  if (domain !== undefined && !DOMAIN.test(domain)) throw new InputError(Input.imageName, loc('InputImageNameInvalid', name));
  for (const part of parts) {
    if (PATH_COMPONENT.test(part)) continue;
    if (PATH_COMPONENT.test(part.toLowerCase()))
      throw new InputError(Input.imageName, loc('InputImageNameUppercase', name, name.toLowerCase()));
    throw new InputError(Input.imageName, loc('InputImageNameInvalid', name));
  }
}
