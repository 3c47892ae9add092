/**
 * sa_services read for the learner, every round: one batched lookup, and
 * per entry only its key bytes and last_seen_ns. The key and the counters
 * are decoded when the learner asks for them, which it does for the entries
 * that changed since the last round; with thousands of mostly idle services
 * that is most of the cost of readServices() (src/kernel/services.ts) saved.
 */
import { bpfMapLookupBatch } from '../kernel/libbpf';
import { SERVICE, SERVICE_KEY } from '../kernel/bpf-layout';
import { decodeService, decodeServiceKey, type ServiceCounters, type ServiceKey } from '../kernel/services';
import type { ServiceSample } from './learner';

class LazySample implements ServiceSample {
  readonly ref: string;
  readonly lastSeenNs: bigint;
  private decodedKey: ServiceKey | undefined;
  private decodedCounters: ServiceCounters | undefined;

  constructor(
    private readonly rawKey: Buffer,
    private readonly rawValue: Buffer,
  ) {
    this.ref = rawKey.toString('hex');
    this.lastSeenNs = rawValue.readBigUInt64LE(SERVICE.lastSeenNs);
  }

  get key(): ServiceKey {
    return (this.decodedKey ??= decodeServiceKey(this.rawKey));
  }

  get counters(): ServiceCounters {
    return (this.decodedCounters ??= decodeService(this.rawValue));
  }
}

export function readServiceSamples(fd: number): ServiceSample[] {
  return bpfMapLookupBatch(fd, SERVICE_KEY.size, SERVICE.size).map((e) => new LazySample(e.key, e.value));
}
