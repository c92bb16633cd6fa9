import { SetMetadata } from '@nestjs/common';
import { KEYCARD_PUBLIC } from '../keycard.constants.js';

/**
 * Marks a route or controller as open: the Keycard guard lets every request through without
 * looking at its `Authorization` header (a token sent anyway is ignored).
 *
 * @example
 * ```ts
 * @Public()
 * @Get('health')
 * health() { return { ok: true }; }
 * ```
 * @publicApi
 */
export const Public = () => SetMetadata(KEYCARD_PUBLIC, true);
