/**
 * Every row of the security catalogue is either covered by a test named after it, or listed in
 * test/catalogue-not-applicable.json with the reason. A new catalogue row fails this suite until
 * it is one or the other.
 */
import { describe, expect, it } from '@jest/globals';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CATALOGUE_PATH, NOT_APPLICABLE, ROOT, catalogueAvailable, catalogueRows, renderReport, testedRows } from './support/catalogue.js';
import { itUnless } from './support/skip.js';

const REPORT = join(ROOT, 'test', 'CATALOGUE.md');

describe('security catalogue traceability', () => {
  const tested = testedRows();
  // `npm run catalogue` regenerates the report before it is checked.
  if (process.env.UPDATE_CATALOGUE && catalogueAvailable()) {
    writeFileSync(REPORT, renderReport(readFileSync(CATALOGUE_PATH, 'utf8'), tested));
  }
  const documented = catalogueRows(readFileSync(REPORT, 'utf8'));

  it('every row of test/CATALOGUE.md is tested or explained as not applicable', () => {
    expect(documented.length).toBeGreaterThan(200);
    expect(documented.filter((id) => !tested.has(id) && !NOT_APPLICABLE[id])).toEqual([]);
  });

  it('no row is both tested and marked not applicable', () => {
    expect(Object.keys(NOT_APPLICABLE).filter((id) => tested.has(id))).toEqual([]);
  });

  const withCatalogue = itUnless(catalogueAvailable() ? undefined : '../shared/security-catalogue.md is not beside this checkout: expected in a plain clone, CI has it');

  withCatalogue('every row of ../shared/security-catalogue.md is in test/CATALOGUE.md', () => {
    const rows = catalogueRows(readFileSync(CATALOGUE_PATH, 'utf8'));
    expect(rows.filter((id) => !documented.includes(id))).toEqual([]);
  });

  withCatalogue('test/CATALOGUE.md is current (else run npm run catalogue)', () => {
    expect(readFileSync(REPORT, 'utf8')).toBe(renderReport(readFileSync(CATALOGUE_PATH, 'utf8'), tested));
  });
});
