/**
 * The optional Nest packages whose exception classes a refusal must be an instance of, for their
 * exception filters to send it as it is (anything else becomes "Internal server error"). Loaded on
 * the first refusal in such a context, so an app without gateways or microservices needs neither.
 */
let websockets: Promise<typeof import('@nestjs/websockets')> | undefined;
let loadedWebSockets: typeof import('@nestjs/websockets') | undefined;
let microservices: Promise<typeof import('@nestjs/microservices')> | undefined;

export function loadWebSockets(): Promise<typeof import('@nestjs/websockets')> {
  return (websockets ??= import('@nestjs/websockets').then((loaded) => (loadedWebSockets = loaded)));
}

/** `@nestjs/websockets` once {@link loadWebSockets} has loaded it: a refusal after the first then costs no promise. */
export function webSocketsLoaded(): typeof import('@nestjs/websockets') | undefined {
  return loadedWebSockets;
}

export function loadMicroservices(): Promise<typeof import('@nestjs/microservices')> {
  return (microservices ??= import('@nestjs/microservices'));
}
