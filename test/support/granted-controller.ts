import { Controller, Get } from '@nestjs/common';
import { Access, type AccessContext, Grant } from '../../lib/index.js';

/** The upstream resource `GET /granted` exchanges the caller's token for (`up:read`). */
export const UP = 'https://upstream.example.com';

/**
 * `GET /granted`: a `@Grant` route that reads its upstream token; a failed exchange is rethrown by
 * `access.access()`, so the module's filter answers it (catalogue Q8).
 */
@Controller()
export class GrantedController {
  @Grant(UP, 'up:read')
  @Get('granted')
  granted(@Access() access: AccessContext) {
    return { scope: access.access(UP).scope };
  }
}
