import type { StreamDoor } from './stream-expiry.interceptor.js';
import { errorFields } from './ws.context.js';

/**
 * Nest `@Sse()` routes (catalogue O11, decision Q20): SSE has no close code, so the client is told
 * why with one final event, `event: error` and `data: {"error":"invalid_token","error_description":
 * "<fixed>"}`, then the stream completes and Nest ends the response. Every call of an `@Sse()`
 * handler streams.
 */
export const SSE_STREAMS: StreamDoor = {
  streams: () => true,
  end: (subscriber, denial) => {
    subscriber.next({ type: 'error', data: errorFields(denial) });
    subscriber.complete();
  },
};
