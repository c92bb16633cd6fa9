/**
 * The optional Nest packages whose exception classes a refusal must be an instance of, for their
 * exception filters to send it as it is (anything else becomes "Internal server error"). Loaded on
 * the first refusal in such a context, so an app without gateways or microservices needs neither.
 */
let websockets: Promise<typeof import('@nestjs/websockets')> | undefined;
let microservices: Promise<typeof import('@nestjs/microservices')> | undefined;

export function loadWebSockets(): Promise<typeof import('@nestjs/websockets')> {
  return (websockets ??= import('@nestjs/websockets'));
}

export function loadMicroservices(): Promise<typeof import('@nestjs/microservices')> {
  return (microservices ??= import('@nestjs/microservices'));
}
