/**
 * lib's one way to the native addon: binding/ throws plain errors (it sits below lib
 * and knows nothing of lib's error classes); here they become a LoadError.
 */
import { loadBinding, type NativeBinding } from '../binding';
import { LoadError } from './errors';

export function native(): NativeBinding {
  try {
    return loadBinding();
  } catch (err) {
    throw new LoadError((err as Error).message, { cause: err });
  }
}

/**
 * Whether this kernel can open an SCTP one-to-many socket of the given address family
 * (what `transport: 'detect'` and 'sctp' check at start()). `errno` is socket()'s error
 * when it cannot (94, ESOCKTNOSUPPORT, when the sctp module is missing). Throws a
 * LoadError when the native addon is not built for this platform.
 */
export function sctpAvailable(family: 4 | 6 = 4): { ok: boolean; errno: number } {
  return native().sctpAvailable(family);
}
