/**
 * Docker@2's pipeline labels (azure-pipelines-tasks, docker-common-v2 pipelineutils): the prefix is
 * the reverse DNS name of the collection URI's host (`dev.azure.com` → `com.azure.dev`), then
 * `.image.`, then the variable's name; a variable that is not set gives no label. A build adds the
 * build labels, a release the release labels. Without a collection URI there are none, as there.
 */
const COMMON: readonly [string, string][] = [
  ['system.teamfoundationcollectionuri', 'System.TeamFoundationCollectionUri'],
  ['system.teamproject', 'System.TeamProject'],
  ['build.repository.name', 'Build.Repository.Name'],
];
const BUILD: readonly [string, string][] = [
  ['build.sourceversion', 'Build.SourceVersion'],
  ['build.repository.uri', 'Build.Repository.Uri'],
  ['build.sourcebranchname', 'Build.SourceBranchName'],
  ['build.definitionname', 'Build.DefinitionName'],
  ['build.buildnumber', 'Build.BuildNumber'],
  ['build.builduri', 'Build.BuildUri'],
];
const RELEASE: readonly [string, string][] = [
  ['release.releaseid', 'Release.ReleaseId'],
  ['release.definitionname', 'Release.DefinitionName'],
  ['release.releaseweburl', 'Release.ReleaseWebUrl'],
];

export function pipelineLabels(variable: (name: string) => string | undefined): string[] {
  const collection = variable('System.TeamFoundationCollectionUri');
  let host: string;
  try {
    host = new URL(collection ?? '').hostname;
  } catch {
    return [];
  }
  if (host === '') return [];
  const prefix = `${host.split('.').reverse().join('.')}.image`;
  const kind = (variable('System.HostType') ?? 'build').toLowerCase() === 'build' ? BUILD : RELEASE;
  return [...COMMON, ...kind].flatMap(([label, name]) => {
    const value = variable(name);
    return value === undefined || value === '' ? [] : [`${prefix}.${label}=${value}`];
  });
}
