/**
 * `@opentelemetry/api`, an optional peer dependency: imported only when an app imports
 * {@link KeycardTelemetryModule}, and then once. An app without it loads nothing of OpenTelemetry
 * (catalogue W10): the import fails, the module says so once and stays off.
 */
export type OpenTelemetryApi = typeof import('@opentelemetry/api');

let loading: Promise<OpenTelemetryApi | undefined> | undefined;

/** The API, or `undefined` when the package is not installed. */
export function loadOpenTelemetry(): Promise<OpenTelemetryApi | undefined> {
  return (loading ??= import('@opentelemetry/api').then(
    (api) => api,
    () => undefined,
  ));
}
