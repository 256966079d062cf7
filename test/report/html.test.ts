/**
 * The HTML report in a real headless Chromium (Debian's `chromium`, driven by playwright-core),
 * opened from file://: what a person sees (counts, a red MISSED cell, a job's timeline that
 * expands, the block map, filters), nothing fetched but the file itself, no markup from the record
 * executed. Screenshots go to test-results/report-html/.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { renderHtml } from '../../src/report/index.ts';
import { makeRunRecord } from '../helpers/report-fixtures.ts';
import { chromiumAvailable, CHROMIUM, launchBrowser } from '../helpers/report-browser.ts';
import { ROOT, tempDir } from '../helpers/tools.ts';

// Runs in the page (the project's tsconfig has no DOM lib).
declare const getComputedStyle: (element: unknown) => { color: string; backgroundColor: string };

const SHOTS = join(ROOT, 'test-results/report-html');

test('the HTML report, as a person sees it in Chromium', async (t) => {
  if (!chromiumAvailable()) {
    t.fail(`${CHROMIUM} is missing: apt-get install chromium (scripts/setup.sh installs it)`);
    return;
  }
  const { dir, cleanup } = await tempDir('cbt-html-');
  t.teardown(cleanup);
  const record = await makeRunRecord({ seed: 11, hostile: true, driverVersion: '2.4.1', infraRate: 0.1 });
  const t0 = record.totals;
  t.true(t0.verdicts.MISSED > 0 && t0.failed > 0 && t0.infraErrors > 0, 'the fixture has something to show');
  const file = join(dir, 'report.html');
  const html = renderHtml(record);
  await writeFile(file, html);
  t.false(html.includes('<script>alert'), 'markup from the record is escaped');
  const url = pathToFileURL(file).href;

  const browser = await launchBrowser();
  t.teardown(browser.close);
  const page = await browser.context.newPage();
  const requested: string[] = [];
  const problems: string[] = [];
  await page.route('**', async (route) => {
    requested.push(route.request().url());
    // Only the report itself may load; anything else would need the network at view time.
    if (route.request().url() === url) await route.continue();
    else await route.abort();
  });
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, 'summary.png') });

  // Summary counts.
  t.is(await page.locator('#count-jobs .n').innerText(), String(t0.jobs));
  t.is(await page.locator('#count-passed .n').innerText(), String(t0.passed));
  t.is(await page.locator('#count-failed .n').innerText(), String(t0.failed));
  t.is(await page.locator('#count-infra .n').innerText(), String(t0.infraErrors));
  t.is(await page.locator('#count-missed .n').innerText(), String(t0.verdicts.MISSED));
  t.is(await page.locator('#run-status').innerText(), 'FAILED');
  t.is(await page.locator('#run-id').innerText(), record.runId);
  const missedCardColor = await page.locator('#count-missed .n').evaluate((e) => getComputedStyle(e).color);
  t.is(missedCardColor, 'rgb(198, 40, 40)');

  // The matrix: a MISSED cell, visible and red; scenario names shown as text, markup and all.
  const missedCell = page.locator('#matrix td[data-verdict="MISSED"]').first();
  t.true(await missedCell.isVisible());
  t.is(await missedCell.evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(198, 40, 40)');
  t.regex(await missedCell.innerText(), /^MISSED \d+\/\d+/);
  t.regex(await page.locator('#matrix tbody th').first().innerText(), /<script>alert\("x"\)<\/script>/);
  const builds = new Set(record.jobs.map((j) => j.guest.os.build));
  t.is(await page.locator('#matrix thead th').count(), builds.size + 1);

  // Charts: one bar per build.
  t.is(await page.locator('#chart-over-build rect').count(), builds.size);
  t.is(await page.locator('#chart-resync-driver rect').count(), new Set(record.jobs.map((j) => `${j.guest.tracker.name} ${j.guest.tracker.version}`)).size);

  // A failed job (listed first) expands; its timeline expands; its block map draws missed cells.
  const job = page.locator('details.job.failed[data-missed]').first();
  const timelineTable = job.locator('table.tl-table');
  t.false(await timelineTable.isVisible());
  await job.locator('> summary').click();
  t.true(await job.locator('table.facts').isVisible());
  t.false(await timelineTable.isVisible(), 'the timeline stays folded until asked');
  await job.locator('details.timeline > summary').click();
  t.true(await timelineTable.isVisible());
  const jobId = await job.getAttribute('data-job-id');
  const recJob = record.jobs.find((j) => j.id === jobId)!;
  t.is(await timelineTable.locator('tbody tr').count(), Math.min(400, recJob.timeline.length));
  t.true((await timelineTable.locator('tbody tr[data-kind="qmp"]').count()) > 0);
  t.true((await timelineTable.locator('tbody tr[data-kind="verdict"]').count()) === recJob.epochs.length);
  t.true(await job.locator('svg.tl-svg').isVisible());
  const map = job.locator('tr.epoch[data-verdict="MISSED"] + tr.map-row svg.blockmap').first();
  t.true(await map.isVisible());
  const box = await map.boundingBox();
  t.true(box !== null && box.width > 200 && box.height > 10);
  t.true((await map.locator('rect.bm-missed').count()) > 0);
  // Text from stderr is shown, not run.
  t.true((await job.locator('text=</pre><script>alert("stderr")</script>').count()) > 0);
  await job.screenshot({ path: join(SHOTS, 'failed-job.png') });

  // The filter hides passed jobs.
  await page.locator('.filters button[data-filter="failed"]').click();
  t.is(await page.locator('details.job.passed:not(.hidden)').count(), 0);
  t.is(await page.locator('details.job.failed:not(.hidden)').count(), t0.failed);
  await page.locator('.filters button[data-filter="missed"]').click();
  t.is(await page.locator('details.job:not(.hidden)').count(), record.jobs.filter((j) => j.epochs.some((e) => e.verdict === 'MISSED')).length);

  t.deepEqual(requested, [url], 'nothing but the file itself was requested');
  t.deepEqual(problems, []);
});

test('a passing run with a caught known-bad tracker reads PASSED and shows no red', async (t) => {
  if (!chromiumAvailable()) {
    t.fail(`${CHROMIUM} is missing: apt-get install chromium`);
    return;
  }
  const { dir, cleanup } = await tempDir('cbt-html-');
  t.teardown(cleanup);
  const record = await makeRunRecord({ seed: 12, missRate: () => 0, infraRate: 0, repeats: 1, knownBad: 'caught' });
  t.is(record.totals.verdicts.MISSED, record.totals.expectedFailures * 3, 'only the known-bad MISSED');
  const file = join(dir, 'report.html');
  await writeFile(file, renderHtml(record));
  const browser = await launchBrowser();
  t.teardown(browser.close);
  const page = await browser.context.newPage();
  await page.goto(pathToFileURL(file).href);
  t.is(await page.locator('#run-status').innerText(), 'PASSED');
  const caught = page.locator('#matrix td[data-known-bad]');
  t.is(await caught.count(), 1);
  t.regex(await caught.innerText(), /^caught: MISSED 3\/3/);
  t.not(await caught.evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(198, 40, 40)');
  t.is(await page.locator('#matrix td.v-MISSED').count(), 0);
  t.is(await page.locator('.card.bad').count(), 0);
  t.is(await page.locator('#count-known-bad .n').innerText(), '1/1');
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, 'passed.png') });
});
