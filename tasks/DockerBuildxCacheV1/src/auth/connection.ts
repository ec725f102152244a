import { InputError } from '../config/source';
import { taskEndpoints, type EndpointReader } from '../task/endpoints';
import { loc } from '../task/messages';
import { Input } from '../task/inputs';
import { entraAuthority, requiredParameters } from './endpoint';

/** A `dockerregistry` service connection, as the agent hands it to the task. */
export type Connection =
  | { readonly kind: 'password'; readonly registry: string; readonly username: string; readonly password: string }
  | { readonly kind: 'acr-secret'; readonly registry: string; readonly clientId: string; readonly secret: string }
  | {
      readonly kind: 'acr-federated';
      readonly registry: string;
      readonly clientId: string;
      readonly tenantId: string;
      readonly authority: string;
      readonly connectionId: string;
    }
  | { readonly kind: 'acr-managed-identity'; readonly registry: string; readonly clientId?: string };

/**
 * Reads the `containerRegistry` connection: a user name and password for any registry, or for
 * Azure Container Registry a service principal with a secret, workload identity federation, or the
 * agent's managed identity. An absent or foreign connection is an input error that says so.
 */
export function readConnection(id: string, ep: EndpointReader = taskEndpoints): Connection {
  const scheme = ep.scheme(id);
  if (scheme === undefined && ep.url(id) === undefined) throw new InputError(Input.containerRegistry, loc('InputConnectionMissing', id));
  const registryType = ep.data(id, 'registrytype');
  const need = requiredParameters(ep, id, Input.containerRegistry);

  if (registryType === 'ACR') {
    const registry = need('loginServer').toLowerCase();
    switch (scheme) {
      case 'ServicePrincipal':
        return { kind: 'acr-secret', registry, clientId: need('serviceprincipalid'), secret: need('serviceprincipalkey') };
      case 'WorkloadIdentityFederation':
        return {
          kind: 'acr-federated',
          registry,
          clientId: need('serviceprincipalid'),
          tenantId: need('tenantid'),
          authority: entraAuthority(ep, id, 'activeDirectoryAuthority'),
          connectionId: id,
        };
      case 'ManagedServiceIdentity':
        return { kind: 'acr-managed-identity', registry, clientId: ep.param(id, 'serviceprincipalid') || undefined };
      default:
        throw new InputError(Input.containerRegistry, loc('InputConnectionScheme', id, scheme ?? '-'));
    }
  }
  // An AzureRM or other connection has another scheme; a generic one without a registry is incomplete.
  if (scheme !== 'UsernamePassword') throw new InputError(Input.containerRegistry, loc('InputConnectionWrongType', id));
  return { kind: 'password', registry: need('registry'), username: need('username'), password: need('password') };
}
