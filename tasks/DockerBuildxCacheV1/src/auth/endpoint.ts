import { InputError } from '../config/source';
import type { EndpointReader } from '../task/endpoints';
import type { InputName } from '../task/inputs';
import { loc } from '../task/messages';

// What the readers of both kinds of service connection share.

/** The public cloud's Entra ID authority. */
const PUBLIC_AUTHORITY = 'https://login.microsoftonline.com/';

/** The Entra ID authority that a connection names in its data under `key`; the public cloud's when it names none. */
export function entraAuthority(ep: EndpointReader, id: string, key: string): string {
  return ep.data(id, key) || PUBLIC_AUTHORITY;
}

/**
 * The reader of a connection's authorization parameters that it must have: a missing or empty one
 * is an InputError on `input`, the input that names the connection.
 */
export function requiredParameters(ep: EndpointReader, id: string, input: InputName): (key: string) => string {
  return (key) => {
    const value = ep.param(id, key);
    if (value === undefined || value === '') throw new InputError(input, loc('InputConnectionIncomplete', id, key));
    return value;
  };
}
