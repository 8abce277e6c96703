// No imports: the worker entry loads this module before anything else (see worker-main.ts).

/**
 * Owns one signal for the whole life of a process. The default action of
 * SIGHUP is to terminate, so a SIGHUP that arrives while a process is still
 * loading its modules or starting its listeners would kill it. The gate
 * installs a listener at once and holds what arrives until the process routes
 * the signal to a handler; it is never removed, so the signal stays harmless
 * while the process drains too.
 */
export interface SignalGate {
  /**
   * Sends the signal to `handler` from now on. If it arrived while held, the
   * handler runs once (several held signals mean one reload, not many).
   */
  route(handler: () => void): void;
}

export function holdSignal(signal: NodeJS.Signals): SignalGate {
  let handler: (() => void) | undefined;
  let held = false;
  process.on(signal, () => {
    if (handler) handler();
    else held = true;
  });
  return {
    route(next) {
      handler = next;
      if (held) {
        held = false;
        next();
      }
    },
  };
}
