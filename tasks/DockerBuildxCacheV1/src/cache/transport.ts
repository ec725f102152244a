import type { CacheConfig, Driver } from '../config/types';
import { isStoreBackend } from '../config/types';
import { loc } from '../task/messages';
import { configSetting } from '../docker/config-dir';

/** How BuildKit reaches a store's cache: the registry facade on loopback, or the cache folder. */
export type Transport = 'direct' | 'folder';

/** Why a job uses the transport it does. */
export type TransportReason =
  /** The backend keeps no store: the question does not arise. */
  | { readonly kind: 'noStore' }
  /** `cacheTransport` names it. */
  | { readonly kind: 'input' }
  /**
   * `auto`: direct, for a docker-container builder of the task's own, which it creates on the host's
   * network: for this job (lifetime `job`), or kept for the agent (`agent`).
   */
  | { readonly kind: 'autoOwnBuilder'; readonly backend: 'local' | 'azureBlob'; readonly lifetime: 'job' | 'agent' }
  /** `auto`: the folder, for a driver other than docker-container. */
  | { readonly kind: 'autoDriver'; readonly driver: Driver }
  /** `auto`: the folder, for the builder the pipeline names (builderName), which may have state. */
  | { readonly kind: 'autoNamedBuilder'; readonly builder: string }
  /** `auto`: the folder, because driverOptions names a network of its own. */
  | { readonly kind: 'autoNetwork'; readonly option: string }
  /** Direct, and the builder reaches this machine's loopback. */
  | { readonly kind: 'reaches'; readonly driver: Driver; readonly builder: string }
  /** The docker engine (DOCKER_HOST, or the docker driver's endpoint) may be another machine's. */
  | { readonly kind: 'remoteEngine'; readonly engine: string }
  /** A docker-container builder whose container is not on the host's network. */
  | { readonly kind: 'noHostNetwork'; readonly builder: string }
  /** A remote builder whose address is neither a unix socket nor loopback. */
  | { readonly kind: 'remoteAddress'; readonly endpoint: string }
  /** Kubernetes builders run in pods. */
  | { readonly kind: 'kubernetes' }
  /**
   * The agent's docker config names a global credential store, and the facade's login would go into
   * a copy of it without the store (see docker/config-dir.ts): private images would not pull.
   */
  | { readonly kind: 'credsStore'; readonly store: string }
  /** Direct was meant, but the store could not be opened or served: the build runs without a cache. */
  | { readonly kind: 'noCache' };

export interface TransportChoice {
  readonly transport: Transport;
  readonly reason: TransportReason;
}

/** The builder the build runs on, as far as reaching this machine's loopback goes. */
export interface ReachFacts {
  readonly driver: Driver;
  /** The builder's name (the docker driver's is the context, `default`). */
  readonly builder: string;
  /** The `endpoint` input: the docker driver's context, a docker-container builder's engine, a remote builder's address. */
  readonly endpoint?: string;
  /** DOCKER_HOST of the docker the task runs, when set. */
  readonly dockerHost?: string;
  /** For docker-container: whether the builder's container uses the host's network (`network=host`). */
  readonly hostNetwork: boolean;
  /**
   * The agent's global credential store (`credsStore` of its docker config), when the build would
   * run with a copy of that config made for the facade's login, which cannot keep it.
   */
  readonly credsStore?: string;
}

/**
 * What `cacheTransport: auto` decides from, all known before the builder is created (a
 * `docker-container` builder gets `network=host` at its creation): the builder the job will have,
 * and the reach facts that do not need the builder.
 */
export interface AutoFacts extends Pick<ReachFacts, 'endpoint' | 'dockerHost' | 'credsStore'> {
  /** The driver the job builds with (for `driver: auto`, as the preflight decided it). */
  readonly driver: Driver;
  /** `builderName`, when the pipeline names the builder. */
  readonly builderName?: string;
  /** How long a builder the task creates lives: `job` (its own, new and empty) or `agent` (kept, with state). */
  readonly lifetime: 'job' | 'agent';
  readonly driverOptions: readonly string[];
}

/** A `network=` driver option other than the host's, which the task's `network=host` would not override. */
const ownNetwork = (driverOptions: readonly string[]): string | undefined =>
  driverOptions.find((o) => /^network=/i.test(o) && !/^network=host$/i.test(o.trim()));

/**
 * What `cacheTransport: auto` picks: `direct` for a `docker-container` builder of the task's own (no
 * builderName), which it creates with `network=host`, unless driverOptions names a network of the
 * pipeline's own, and on an engine on this machine; everywhere else the folder, with the reason.
 *
 * Measured (npm run bench, warm source-only jobs, the local store): on the hosted-agent engine, a
 * new builder each job, direct took 0.74× the folder's time (the image is pulled from the facade,
 * and BuildKit reads only the blobs it needs); on a self-hosted agent on the classic store, the
 * builder the agent keeps, 0.46× (0.93 s against 2.02 s): the engine still has the previous job's
 * image, so its pull downloads the new layers only, where `--load` sends the whole image through
 * `docker load`. With the `docker` driver the image needs no load and the engine's builder has
 * state: direct measured no faster there (0.8–0.9 s against 0.8 s), and the folder is kept.
 */
export function autoTransport(backend: 'local' | 'azureBlob', facts: AutoFacts): TransportChoice {
  const folder = (reason: TransportReason): TransportChoice => ({ transport: 'folder', reason });
  if (facts.driver !== 'docker-container') return folder({ kind: 'autoDriver', driver: facts.driver });
  if (facts.builderName !== undefined) return folder({ kind: 'autoNamedBuilder', builder: facts.builderName });
  const network = ownNetwork(facts.driverOptions);
  if (network !== undefined) return folder({ kind: 'autoNetwork', option: network });
  // The rest is what the builder must do for direct anyway (see chooseTransport), known already.
  return chooseTransport(
    { transport: 'direct', reason: { kind: 'autoOwnBuilder', backend, lifetime: facts.lifetime } },
    { ...facts, builder: '', hostNetwork: true },
  );
}

/**
 * `auto`'s folder, said for the driver the job got: the choice is made before `driver: auto` is
 * resolved, as if the builder were a `docker-container` one (whose network is set at creation),
 * so a folder picked for that builder's sake is, with another driver, the driver's.
 */
export function autoReasonForDriver(choice: TransportChoice, driver: Driver): TransportChoice {
  const forContainer = ['autoNamedBuilder', 'autoNetwork'];
  if (driver === 'docker-container' || !forContainer.includes(choice.reason.kind)) return choice;
  return { transport: 'folder', reason: { kind: 'autoDriver', driver } };
}

/**
 * What the job means to use before the builder is created: `folder` for the backends without a
 * store, the input's when it names one, else what `auto` picks from the facts (see autoTransport).
 * `direct` must then be confirmed by the builder (see chooseTransport). A `docker-container`
 * builder the task creates gets `network=host` only when this is `direct`.
 */
export function intendedTransport(cache: Pick<CacheConfig, 'backend' | 'transport'>, facts: AutoFacts): TransportChoice {
  const backend = cache.backend;
  if (!isStoreBackend(backend)) return { transport: 'folder', reason: { kind: 'noStore' } };
  if (cache.transport !== 'auto') return { transport: cache.transport, reason: { kind: 'input' } };
  return autoTransport(backend, facts);
}

/** A docker or BuildKit address on this machine: a unix socket, or TCP to loopback. */
export function isLocalAddress(address: string): boolean {
  const a = address.trim().toLowerCase();
  if (a.startsWith('unix://')) return true;
  const tcp = /^(?:tcp|http|https):\/\/(\[[^\]]*\]|[^:/]*)/.exec(a);
  if (tcp === null) return false;
  const host = tcp[1] ?? '';
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * The transport of the build, once the builder is known: the intended one (see intendedTransport),
 * except that `direct`
 * needs a builder that reaches this machine's loopback, where the facade listens:
 *
 * - `docker`: the engine's own BuildKit, on the host's network, when the engine is this machine's
 *   (DOCKER_HOST unset, a unix socket or loopback; no `endpoint`, which names another context);
 * - `docker-container`: a builder on the host's network (`network=host`, which the task gives the
 *   builders it creates), on this machine's engine;
 * - `remote`: a BuildKit daemon on a unix socket or loopback;
 * - `kubernetes`: never.
 *
 * Otherwise the folder, and the reason says why.
 */
export function chooseTransport(intended: TransportChoice, facts: ReachFacts): TransportChoice {
  if (intended.transport === 'folder') return intended;
  const folder = (reason: TransportReason): TransportChoice => ({ transport: 'folder', reason });
  if (facts.credsStore !== undefined && facts.credsStore !== '') return folder({ kind: 'credsStore', store: facts.credsStore });
  const engineIsLocal = facts.dockerHost === undefined || facts.dockerHost === '' || isLocalAddress(facts.dockerHost);
  switch (facts.driver) {
    case 'docker':
      if (facts.endpoint !== undefined && facts.endpoint !== 'default') return folder({ kind: 'remoteEngine', engine: facts.endpoint });
      if (!engineIsLocal) return folder({ kind: 'remoteEngine', engine: facts.dockerHost ?? '' });
      break;
    case 'docker-container':
      if (facts.endpoint !== undefined && !isLocalAddress(facts.endpoint)) return folder({ kind: 'remoteEngine', engine: facts.endpoint });
      if (facts.endpoint === undefined && !engineIsLocal) return folder({ kind: 'remoteEngine', engine: facts.dockerHost ?? '' });
      if (!facts.hostNetwork) return folder({ kind: 'noHostNetwork', builder: facts.builder });
      break;
    case 'remote':
      if (facts.endpoint === undefined || !isLocalAddress(facts.endpoint))
        return folder({ kind: 'remoteAddress', endpoint: facts.endpoint ?? '' });
      break;
    case 'kubernetes':
      return folder({ kind: 'kubernetes' });
  }
  // What auto picked says why already; an input's direct is confirmed by the builder.
  if (intended.reason.kind === 'autoOwnBuilder') return intended;
  return { transport: 'direct', reason: { kind: 'reaches', driver: facts.driver, builder: facts.builder } };
}

/** Why, in words, for the log. */
export function describeTransportReason(reason: TransportReason): string {
  switch (reason.kind) {
    case 'noStore':
      return loc('TransportWhyNoStore');
    case 'input':
      return loc('TransportWhyInput');
    case 'autoOwnBuilder':
      return reason.lifetime === 'job'
        ? loc('TransportWhyAutoJobBuilder', reason.backend)
        : loc('TransportWhyAutoKeptBuilder', reason.backend);
    case 'autoDriver':
      return loc('TransportWhyAutoDriver', reason.driver);
    case 'autoNamedBuilder':
      return loc('TransportWhyAutoNamedBuilder', reason.builder);
    case 'autoNetwork':
      return loc('TransportWhyAutoNetwork', reason.option);
    case 'reaches':
      return loc('TransportWhyReaches', reason.driver, reason.builder);
    case 'remoteEngine':
      return loc('TransportWhyRemoteEngine', reason.engine);
    case 'noHostNetwork':
      return loc('TransportWhyNoHostNetwork', reason.builder);
    case 'remoteAddress':
      return loc('TransportWhyRemoteAddress', reason.endpoint);
    case 'kubernetes':
      return loc('TransportWhyKubernetes');
    case 'credsStore':
      return loc('TransportWhyCredsStore', reason.store);
    case 'noCache':
      return loc('TransportWhyNoCache');
  }
}

/** The global credential store (`credsStore`) a docker config.json names; undefined for none or an unreadable file. */
export function credsStoreOf(configJson: string): string | undefined {
  return configSetting(configJson, 'credsStore');
}

/**
 * Whether a buildx builder instance, as buildx stores it (`<DOCKER_CONFIG>/buildx/instances/<name>`,
 * JSON), runs every node on the host's network: `DriverOpts.network` is `host`.
 */
export function instanceOnHostNetwork(instance: string): boolean {
  try {
    const parsed = JSON.parse(instance) as { Nodes?: { DriverOpts?: Record<string, string> | null }[] | null };
    const nodes = parsed.Nodes ?? [];
    return nodes.length > 0 && nodes.every((n) => n.DriverOpts?.network === 'host');
  } catch {
    return false;
  }
}
