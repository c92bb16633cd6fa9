import { request as httpRequest } from 'node:http';

/** One server-sent event as a client parses it, with the time it arrived (ms since the epoch). */
export interface ReceivedEvent {
  event?: string;
  data: string;
  at: number;
}

/** What a `text/event-stream` GET received until the server ended the response. */
export interface EventStreamAnswer {
  status: number;
  contentType: string | undefined;
  events: ReceivedEvent[];
  /** When the server ended the response (ms since the epoch). */
  endedAt: number;
}

/**
 * Reads a server-sent event stream over loopback until the server ends it, as an `EventSource`
 * would parse it (WHATWG HTML §9.2.6: `event` and `data` fields, blank line between events;
 * comments and `id`/`retry` are ignored here).
 */
export function readEventStream(url: string, headers: Record<string, string>): Promise<EventStreamAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { Accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
      const events: ReceivedEvent[] = [];
      let buffered = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        let blank: number;
        while ((blank = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, blank);
          buffered = buffered.slice(blank + 2);
          const event = parseEvent(block, Date.now());
          if (event !== undefined) events.push(event);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], events, endedAt: Date.now() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function parseEvent(block: string, at: number): ReceivedEvent | undefined {
  let event: string | undefined;
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice('event: '.length);
    else if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
  }
  return event === undefined && data.length === 0 ? undefined : { event, data: data.join('\n'), at };
}
