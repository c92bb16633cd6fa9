import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { Public } from '../../lib/index.js';
import { KeycardHealthIndicator } from '../../lib/health/index.js';

/** `GET /health` as docs/operations.md shows it: public, the Keycard indicator only. */
@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly keycard: KeycardHealthIndicator,
  ) {}

  @Public()
  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.keycard.isHealthy()]);
  }
}
