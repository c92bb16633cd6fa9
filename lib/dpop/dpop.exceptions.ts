import { HttpStatus } from '@nestjs/common';
import { KeycardException } from '../resource-server/keycard.exceptions.js';

/**
 * 401 `invalid_dpop_proof` (RFC 9449 §7.1): the `DPoP` header is missing, repeated or malformed,
 * or the proof is wrongly signed, stale, replayed or made for another request.
 * @publicApi
 */
export class InvalidDpopProofException extends KeycardException {
  constructor(code: 'dpop_proof_invalid' | 'dpop_proof_replayed' = 'dpop_proof_invalid') {
    super(code, HttpStatus.UNAUTHORIZED, 'invalid_dpop_proof');
  }
  headers(prm: string | undefined, realm: string | undefined) {
    return this.errorChallenge('invalid_dpop_proof', prm, realm);
  }
}

/**
 * 401 `use_dpop_nonce` (RFC 9449 §9) with a fresh `DPoP-Nonce`, uncacheable (§8.2): the proof
 * carried no nonce, or one this API did not issue or that expired.
 * @publicApi
 */
export class UseDpopNonceException extends KeycardException {
  constructor(readonly nonce: string) {
    super('dpop_nonce_required', HttpStatus.UNAUTHORIZED, 'use_dpop_nonce');
  }
  headers(prm: string | undefined, realm: string | undefined) {
    return { ...this.errorChallenge('use_dpop_nonce', prm, realm), 'DPoP-Nonce': this.nonce, 'Cache-Control': 'no-store' };
  }
}

/**
 * 503 with `Retry-After`: the shared DPoP replay store cannot answer and the module is configured
 * to refuse then (`replayStoreUnavailable: 'refuse'`, catalogue H18). Not the client's fault.
 * @publicApi
 */
export class DpopReplayStoreUnavailableException extends KeycardException {
  constructor() {
    super('dpop_replay_store_unavailable', HttpStatus.SERVICE_UNAVAILABLE, 'temporarily_unavailable');
  }
  headers() {
    return { 'Retry-After': '1' };
  }
}
