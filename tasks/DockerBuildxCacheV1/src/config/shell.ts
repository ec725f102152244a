import { parse as shellParse } from 'shell-quote';
import { Input } from '../task/inputs';
import { loc } from '../task/messages';
import { InputError } from './source';

/** Splits `additionalArguments` the way a POSIX shell would, without expanding anything. */
export function splitArguments(text: string): string[] {
  if (text.trim() === '') return [];
  const words: string[] = [];
  for (const entry of shellParse(text, (key) => `$${key}`)) {
    if (typeof entry === 'string') words.push(entry);
    else if ('op' in entry && entry.op === 'glob') words.push(entry.pattern);
    else if ('op' in entry) throw new InputError(Input.additionalArguments, loc('InputArgumentsOperator', entry.op));
    // Comments end the line, as in a shell.
  }
  return words;
}
