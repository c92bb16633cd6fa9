import { AdmittedCalls } from './admitted-calls.js';

describe('AdmittedCalls', () => {
  it('remembers an argument list it admitted, and no other', () => {
    const calls = new AdmittedCalls();
    const admitted: unknown[] = [undefined, {}, {}, {}];
    const next: unknown[] = [undefined, {}, {}, {}];
    calls.add(admitted);
    expect(calls.has(admitted)).toBe(true);
    expect(calls.has(next)).toBe(false);
  });

  it("never takes another instance's admission for its own (an app's KeycardGuard subclass judges again)", () => {
    const moduleGuard = new AdmittedCalls();
    const subclassGuard = new AdmittedCalls();
    const args: unknown[] = [];
    moduleGuard.add(args);
    expect(subclassGuard.has(args)).toBe(false);
  });

  it('leaves no enumerable trace a handler or serialiser would see', () => {
    const calls = new AdmittedCalls();
    const args = ['a', 'b'];
    calls.add(args);
    expect([...args]).toEqual(['a', 'b']);
    expect(JSON.stringify(args)).toBe('["a","b"]');
    expect(Object.keys(args)).toEqual(['0', '1']);
  });

  it('judges a frozen argument list again rather than failing', () => {
    const calls = new AdmittedCalls();
    const frozen = Object.freeze([1, 2]);
    expect(() => calls.add(frozen)).not.toThrow();
    expect(calls.has(frozen)).toBe(false);
  });

  it('forgets a call another instance marked after it (judged again, never wrongly admitted)', () => {
    const first = new AdmittedCalls();
    const second = new AdmittedCalls();
    const args: unknown[] = [];
    first.add(args);
    second.add(args);
    expect(second.has(args)).toBe(true);
    expect(first.has(args)).toBe(false);
  });
});
