/**
 * Guards, filters and interceptors the module binds as class metadata (WebSocket gateways,
 * mcp-nest tool classes). Class metadata is the process's, not an app's: several Nest apps of one
 * process (tests, one app per port) share a gateway or tool class, and each reads the class's
 * metadata when it binds its handlers. So what is bound there is one module-level instance per
 * class, bound once, that finds the app serving each call; every app registers itself as serving
 * the class while it is created and unregisters when it closes ({@link AppsPerClass}).
 */

/** Puts `value` first or last among the class's `key` metadata (a list), once (also when a base class has it). */
export function bindOnce(key: string, type: object, value: unknown, at: 'first' | 'last'): void {
  const current = (Reflect.getMetadata(key, type) as unknown[] | undefined) ?? [];
  if (current.includes(value)) return;
  Reflect.defineMetadata(key, at === 'first' ? [value, ...current] : [...current, value], type);
}

/** The apps alive in this process, per class they serve. */
export class AppsPerClass<App> {
  private readonly apps = new WeakMap<object, Set<App>>();

  add(type: object, app: App): void {
    this.apps.set(type, (this.apps.get(type) ?? new Set()).add(app));
  }

  delete(type: object, app: App): void {
    this.apps.get(type)?.delete(app);
  }

  /** Every live app serving `type`. */
  of(type: object | undefined): Iterable<App> {
    return (type === undefined ? undefined : this.apps.get(type)) ?? [];
  }

  /** The one live app serving `type`, if only one does (a call whose app nothing names). */
  only(type: object | undefined): App | undefined {
    const apps = type === undefined ? undefined : this.apps.get(type);
    return apps?.size === 1 ? apps.values().next().value : undefined;
  }
}
