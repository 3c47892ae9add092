/**
 * The daemon's adaptive component: writes the runtime switch (sa_policy)
 * from config, runs the learner on its interval, and offers the switch to
 * `bench`, which compares "accelerate everything" with "adaptive".
 */
import type { Logger } from 'pino';
import type { PortOverrides, SockaccelConfig } from '../config/config';
import { deleteDecision, readDecisions, setAdaptiveSwitch, writeDecision } from '../kernel/services';
import { readServiceSamples } from './service-samples';
import { Learner, type LearnedService } from './learner';
import type { AdaptiveSnapshot } from '../metrics/registry';

export interface AdaptiveFds {
  readonly services: number;
  readonly decisions: number;
  readonly policy: number;
}

export interface Adaptive {
  /** On: the sock_ops program reads the decisions; off: it accelerates everything that pairs (learning goes on). */
  setEnabled(on: boolean): void;
  readonly enabled: boolean;
  learned(): LearnedService[];
  /** For the metrics: each tracked service's state, from memory (no map reads). */
  snapshot(): AdaptiveSnapshot;
  stop(): void;
}

export type AdaptiveConfig = Pick<
  SockaccelConfig,
  | 'adaptive'
  | 'adaptiveExplorePermille'
  | 'adaptiveHalfLifeSeconds'
  | 'adaptiveMinConnections'
  | 'adaptiveIntervalMs'
  | 'adaptiveConnectionCostNs'
  | 'adaptiveTurnSavingNs'
  | 'adaptiveBurstMessageCostNs'
  | 'adaptiveByteSavingPs'
>;

/** `overrides`: adaptiveOverrides as the daemon parsed them for the loader; the learner writes no decision for those ports. */
export function startAdaptive(fds: AdaptiveFds, config: AdaptiveConfig, overrides: PortOverrides, log: Logger): Adaptive {
  const overridden = new Set([...overrides.accelerate, ...overrides.plain]);
  const learner = new Learner(
    {
      readServices: () => readServiceSamples(fds.services),
      readDecisions: () => readDecisions(fds.decisions),
      writeDecision: (key, d) => writeDecision(fds.decisions, key, d),
      deleteDecision: (key) => deleteDecision(fds.decisions, key),
    },
    {
      connectionCostNs: config.adaptiveConnectionCostNs,
      turnSavingNs: config.adaptiveTurnSavingNs,
      burstMessageCostNs: config.adaptiveBurstMessageCostNs,
      byteSavingPs: config.adaptiveByteSavingPs,
      minConnections: config.adaptiveMinConnections,
      explorePermille: config.adaptiveExplorePermille,
      halfLifeMs: config.adaptiveHalfLifeSeconds * 1000,
      overriddenPorts: overridden,
    },
    log,
  );
  let enabled = config.adaptive;
  setAdaptiveSwitch(fds.policy, enabled);
  learner.start();
  log.info(
    { adaptive: enabled, services: learner.size, overrides, intervalMs: config.adaptiveIntervalMs, halfLifeSeconds: config.adaptiveHalfLifeSeconds },
    'adaptive policy started',
  );

  // One failure logged at warn, then quiet until a round succeeds again.
  let failing = false;
  const timer = setInterval(() => {
    try {
      learner.tick();
      if (failing) log.info('adaptive learning works again');
      failing = false;
    } catch (err) {
      if (!failing) log.warn({ err }, 'adaptive learning round failed; decisions stay as they are');
      failing = true;
    }
  }, config.adaptiveIntervalMs);

  return {
    setEnabled(on: boolean) {
      setAdaptiveSwitch(fds.policy, on);
      if (on !== enabled) log.info({ adaptive: on }, on ? 'adaptive policy on' : 'adaptive policy off: every connection that pairs is accelerated');
      enabled = on;
    },
    get enabled() {
      return enabled;
    },
    learned: () => learner.learned(),
    snapshot: () => ({
      enabled,
      changes: learner.changes,
      services: learner.decisions().map((s) =>
        overridden.has(s.port)
          ? { decision: 'override' as const, reason: 'none' }
          : { decision: s.decision?.verdict ?? ('learning' as const), reason: s.decision?.reason ?? 'none' },
      ),
    }),
    stop() {
      clearInterval(timer);
    },
  };
}
