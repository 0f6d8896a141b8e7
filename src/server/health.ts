/**
 * grpc.health.v1.Health (Check, Watch, List) for the overall server ("") and each buffdb service,
 * and the hook that sets it: a service is SERVING while no reason against it holds. Reasons are
 * named ("read-only", "shutting down", later "database connection lost", …) so independent parts
 * of the server can raise and clear their own without knowing about each other.
 */
import type { Server, ServerWritableStream, ServiceDefinition } from '@grpc/grpc-js';
import { HealthImplementation, service as healthService } from 'grpc-health-check';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';

export class HealthStatus {
  private readonly implementation: HealthImplementation;
  /** service → reasons it is not serving. */
  private readonly reasons = new Map<string, Set<string>>();
  private readonly watches = new Set<ServerWritableStream<unknown, unknown>>();

  /** `services`: the full names reported besides the overall status "". */
  constructor(readonly services: readonly string[]) {
    this.implementation = new HealthImplementation();
    for (const name of ['', ...services]) this.reasons.set(name, new Set());
    this.publish();
  }

  /**
   * Raises (`active`) or clears a reason for being NOT_SERVING, for the given services (all of
   * them by default; the overall status "" is NOT_SERVING while any service is).
   */
  set(reason: string, active: boolean, services: readonly string[] = this.services): void {
    for (const name of services) {
      const set = this.reasons.get(name);
      if (!set) throw new Error(`unknown service ${name} in a health status change`);
      if (active) set.add(reason);
      else set.delete(reason);
    }
    this.publish();
  }

  /** Whether `service` ("" = overall) is serving. */
  isServing(service = ''): boolean {
    if (service === '') return this.services.every((s) => this.isServing(s)) && this.reasons.get('')!.size === 0;
    return this.reasons.get(service)?.size === 0;
  }

  /** Why `service` is not serving (empty when it is). */
  reasonsFor(service = ''): string[] {
    if (service !== '') return [...(this.reasons.get(service) ?? [])];
    return [...new Set([...this.reasons.values()].flatMap((s) => [...s]))];
  }

  private publish(): void {
    for (const name of this.reasons.keys()) {
      this.implementation.setStatus(name, this.isServing(name) ? 'SERVING' : 'NOT_SERVING');
    }
  }

  /** Adds the Health service to `server`; Watch streams are remembered so endWatches() can close them. */
  addToServer(server: Server): void {
    this.implementation.addToServer({
      addService: (definition, implementation) => {
        const watch = implementation.watch as (call: ServerWritableStream<unknown, unknown>) => void;
        server.addService(definition as unknown as ServiceDefinition, {
          ...implementation,
          watch: (call: ServerWritableStream<unknown, unknown>) => {
            this.watches.add(call);
            call.on('cancelled', () => this.watches.delete(call));
            watch(call);
          },
        });
      },
    });
  }

  /**
   * Ends every Watch stream with OK (after its NOT_SERVING update), so a graceful shutdown need not
   * wait for watchers that would otherwise stay open forever.
   */
  endWatches(): void {
    for (const call of this.watches) call.end();
    this.watches.clear();
  }
}

export { healthService };
