import type { Call } from './call.js';
import { admissionOf, rememberAdmission } from './earlier-admission.js';

const call = { kind: 'test' } as unknown as Call;

describe('earlier admission', () => {
  it('is found on the argument list it was remembered on, and no other', () => {
    const admitted: unknown[] = [undefined, {}, {}, {}];
    rememberAdmission(admitted, call);
    expect(admissionOf(admitted)).toBe(call);
    expect(admissionOf([undefined, {}, {}, {}])).toBeUndefined();
  });

  it('leaves no enumerable trace a handler or serialiser would see', () => {
    const args = ['a', 'b'];
    rememberAdmission(args, call);
    expect([...args]).toEqual(['a', 'b']);
    expect(JSON.stringify(args)).toBe('["a","b"]');
    expect(Object.keys(args)).toEqual(['0', '1']);
  });

  it('is not kept on a frozen argument list (that call is verified again rather than failing)', () => {
    const frozen = Object.freeze([1, 2]);
    expect(() => rememberAdmission(frozen, call)).not.toThrow();
    expect(admissionOf(frozen)).toBeUndefined();
  });
});
