import * as tl from 'azure-pipelines-task-lib/task';
import { withoutEcho } from './agent';

/** How the agent exposes a service connection; task-lib on an agent, a table in tests. */
export interface EndpointReader {
  url(id: string): string | undefined;
  scheme(id: string): string | undefined;
  param(id: string, key: string): string | undefined;
  data(id: string, key: string): string | undefined;
}

/** An authorization parameter of a connection, without task-lib's debug line that would print its value. */
export function authParameter(id: string, key: string): string | undefined {
  return withoutEcho(`##vso[task.debug]${id} auth param ${key} = `, () => tl.getEndpointAuthorizationParameter(id, key, true));
}

export const taskEndpoints: EndpointReader = {
  url: (id) => tl.getEndpointUrl(id, true),
  scheme: (id) => tl.getEndpointAuthorizationScheme(id, true),
  param: authParameter,
  data: (id, key) => tl.getEndpointDataParameter(id, key, true),
};
