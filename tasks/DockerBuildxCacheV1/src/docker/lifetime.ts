import * as crypto from 'crypto';
import type { Driver } from '../config/types';
import { addsHostNetwork } from './args';
import { loc } from '../task/messages';

/** `builderLifetime`: `auto` decides from the agent; `job` and `agent` are used as given. */
export type LifetimeSetting = 'auto' | 'job' | 'agent';
export type Lifetime = 'job' | 'agent';

/** What the agent tells a task about itself: its variables, and the hosted images' environment. */
export interface AgentFacts {
  /** `Agent.CloudId`: set by the agent only when a pool provider provisioned it (Microsoft-hosted agents). */
  readonly cloudId?: string;
  readonly id?: string;
  readonly name?: string;
  /** `Agent.HomeDirectory`: where this agent is installed, which tells two agents of one name apart. */
  readonly home?: string;
  /** `ImageOS` and `ImageVersion`: set machine-wide by Microsoft's runner images (hosted agents and scale sets built from them). */
  readonly imageOS?: string;
  readonly imageVersion?: string;
}

/** Why a job's builder lives as long as it does. */
export type LifetimeReason =
  | { readonly kind: 'input' }
  | { readonly kind: 'cloudId' }
  | { readonly kind: 'hostedImage'; readonly image: string }
  | { readonly kind: 'hostedName'; readonly name: string }
  | { readonly kind: 'noAgent' }
  | { readonly kind: 'selfHosted'; readonly name: string };

export interface LifetimeChoice {
  readonly lifetime: Lifetime;
  readonly reason: LifetimeReason;
}

/** The names Microsoft-hosted agents had before agents reported Agent.CloudId: `Azure Pipelines 3`, `Hosted Agent`. */
const HOSTED_NAME = /^(?:Azure Pipelines|Hosted Agent)(?: \d+)?$/i;

/**
 * How long the job's builder lives. `auto`: a job's own builder on an agent that does not outlive
 * its job (Microsoft-hosted: `Agent.CloudId` set, or the hosted images' `ImageOS` and
 * `ImageVersion`, or a hosted agent's name), and outside an agent (no `Agent.Name`); otherwise
 * (a self-hosted agent) one builder for the agent, kept across its jobs.
 */
export function chooseLifetime(setting: LifetimeSetting, agent: AgentFacts): LifetimeChoice {
  if (setting !== 'auto') return { lifetime: setting, reason: { kind: 'input' } };
  if (agent.cloudId !== undefined) return { lifetime: 'job', reason: { kind: 'cloudId' } };
  if (agent.imageOS !== undefined && agent.imageVersion !== undefined)
    return { lifetime: 'job', reason: { kind: 'hostedImage', image: `${agent.imageOS} ${agent.imageVersion}` } };
  if (agent.name === undefined) return { lifetime: 'job', reason: { kind: 'noAgent' } };
  if (HOSTED_NAME.test(agent.name)) return { lifetime: 'job', reason: { kind: 'hostedName', name: agent.name } };
  return { lifetime: 'agent', reason: { kind: 'selfHosted', name: agent.name } };
}

/**
 * Whether the agent's machine is certainly discarded after the job: a Microsoft-hosted agent
 * (`Agent.CloudId`, or a hosted agent's name). Not the hosted images' `ImageOS` alone, which a
 * scale-set agent that outlives its jobs has too.
 */
export function discardedAfterJob(agent: AgentFacts): boolean {
  return agent.cloudId !== undefined || (agent.name !== undefined && HOSTED_NAME.test(agent.name));
}

/** What the post-job step needs to know to leave a builder of the job's own to the machine it goes with. */
export interface LeaveFacts {
  readonly agent: AgentFacts;
  readonly driver: Driver;
  /** The `endpoint` input: the builder's container then runs on the engine it names. */
  readonly endpoint?: string;
  /** `docker info`'s Name: the host name of the engine's machine. */
  readonly engineName?: string;
  /** This machine's host name. */
  readonly hostname: string;
}

/**
 * Whether a builder of the job's own goes with the machine, so that removing it after the job
 * would only make the job longer (`docker buildx rm` deletes BuildKit's whole state, a second or
 * more for a cache of a few GB): a `docker-container` builder on the engine of this machine (no
 * `endpoint`, and the engine's host name is this machine's), on an agent whose machine is
 * discarded after the job. Any other builder (another engine, a remote daemon, a Kubernetes
 * deployment) outlives the machine, and is removed.
 */
export function goesWithMachine(f: LeaveFacts): boolean {
  return f.driver === 'docker-container' && f.endpoint === undefined && f.engineName === f.hostname && discardedAfterJob(f.agent);
}

/** What shapes a builder when it is created: a builder made with other settings is another builder. */
export interface BuilderShape {
  readonly driver: Driver;
  readonly driverOptions: readonly string[];
  readonly buildkitdFlags?: string;
  /** The content of the buildkitd.toml (not its path: an inline config is written to a new file in every job). */
  readonly buildkitdConfigText?: string;
  readonly endpoint?: string;
  /**
   * The main step's `hostNetwork` (BuilderConfig): a docker-container builder the task creates for
   * the direct transport gets the host's network.
   */
  readonly hostNetwork?: boolean;
}

const hash = (text: string): string => crypto.createHash('sha256').update(text).digest('hex').slice(0, 16);

/**
 * The name of the builder an agent keeps for builders of one shape: stable across the agent's jobs,
 * different for another agent (by id, name and installation folder) and for another driver, driver
 * options, buildkitd flags, buildkitd.toml, endpoint, or the host's network when the task adds it
 * (so that a direct job's builder is not used by folder jobs, nor a folder job's by direct ones).
 * Builder names hold only [a-zA-Z0-9._-].
 */
export function agentBuilderName(agent: AgentFacts, shape: BuilderShape): string {
  const seed = JSON.stringify({
    agent: [agent.id ?? '', agent.name ?? '', agent.home ?? ''],
    driver: shape.driver,
    driverOptions: shape.driverOptions,
    buildkitdFlags: shape.buildkitdFlags ?? '',
    buildkitdConfig: shape.buildkitdConfigText ?? '',
    endpoint: shape.endpoint ?? '',
    // Only when added, so that the names of builders without it stay those agents already keep.
    ...(addsHostNetwork(shape) ? { hostNetwork: true } : {}),
  });
  return `buildx-cache-agent-${hash(seed)}`;
}

/** The choice and its reason, for the log. */
export function describeLifetime(choice: LifetimeChoice): string {
  const reason = choice.reason;
  switch (reason.kind) {
    case 'input':
      return loc('LifetimeFromInput', choice.lifetime);
    case 'cloudId':
      return loc('LifetimeCloudId', choice.lifetime);
    case 'hostedImage':
      return loc('LifetimeHostedImage', choice.lifetime, reason.image);
    case 'hostedName':
      return loc('LifetimeHostedName', choice.lifetime, reason.name);
    case 'noAgent':
      return loc('LifetimeNoAgent', choice.lifetime);
    case 'selfHosted':
      return loc('LifetimeSelfHosted', choice.lifetime, reason.name);
  }
}
