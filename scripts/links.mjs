// Where the extension's repository and documentation live, for the manifest, the Marketplace
// overview and task.json's helpUrl.
//   node scripts/links.mjs [REPOSITORY]    prints the links as JSON
// Each organisation keeps its copy of this repository in its own Azure Repos, so no URL fits every
// copy. The one place is package.json's "repository" (a placeholder here, like the manifest's
// publisher); the files that ship link into it, and packaging rewrites those links for the
// repository given with --repository or VSIX_REPOSITORY (scripts/package.mjs).
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

/** package.json's repository URL: where the shipped files' links point before packaging rewrites them. */
export function defaultRepository() {
  const { repository } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  return normaliseRepository(typeof repository === 'string' ? repository : repository?.url, 'package.json "repository"');
}

/**
 * A repository URL as links use it: https only, without credentials (Build.Repository.Uri carries
 * the organisation as a user name), a trailing slash or, outside Azure Repos, `.git`.
 */
export function normaliseRepository(value, source = '--repository') {
  let url;
  try {
    url = new URL(String(value ?? ''));
  } catch {
    url = undefined;
  }
  if (url?.protocol !== 'https:') {
    throw new Error(
      `${source}: ${JSON.stringify(value ?? '')} is not an https URL of the repository; write it as the browser shows it, for example https://dev.azure.com/contoso/platform/_git/docker-buildx-cache`,
    );
  }
  url.username = '';
  url.password = '';
  url.search = '';
  url.hash = '';
  let text = url.href.replace(/\/+$/, '');
  if (!isAzureRepos(text)) text = text.replace(/\.git$/, '');
  return text;
}

const isAzureRepos = (repository) => /\/_git\/[^/]+$/.test(new URL(repository).pathname);

/** A link to `file` in the repository's default branch, at heading `anchor` if given. */
export function fileLink(repository, file, anchor) {
  if (isAzureRepos(repository)) return `${repository}?path=/${file}${anchor ? `&anchor=${anchor}` : ''}`;
  return `${repository}/blob/HEAD/${file}${anchor ? `#${anchor}` : ''}`;
}

/** Every link the shipped files make into the repository. */
export function repositoryLinks(repository = defaultRepository()) {
  return {
    repository,
    readme: fileLink(repository, 'README.md'),
    usage: fileLink(repository, 'README.md', 'usage'),
    inputs: fileLink(repository, 'README.md', 'inputs'),
    license: fileLink(repository, 'LICENSE'),
  };
}

/** `text` with every link into repository `from` (the repository itself, a file, a heading) made a link into `to`. */
export function rewriteLinks(text, from, to) {
  if (from === to) return text;
  const base = from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = isAzureRepos(from)
    ? new RegExp(`${base}(?:\\?path=/([^\\s&"'<>)#]+)(?:&anchor=([\\w-]+))?)?(?![\\w/-])`, 'g')
    : new RegExp(`${base}(?:/blob/HEAD/([^\\s"'<>)#]+)(?:#([\\w-]+))?)?(?![\\w/-])`, 'g');
  return text.replace(pattern, (_, file, anchor) => (file ? fileLink(to, file, anchor) : to));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const repository = process.argv[2] ? normaliseRepository(process.argv[2]) : defaultRepository();
    console.log(JSON.stringify(repositoryLinks(repository), null, 2));
  } catch (err) {
    console.error(`links: ${err.message}`);
    process.exit(1);
  }
}
