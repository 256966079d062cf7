/**
 * The HTML report: one self-contained file (inline CSS, a few lines of inline JS, inline SVG drawn
 * here; a Content-Security-Policy that forbids every fetch), readable without JS (jobs and
 * timelines are <details>). Everything taken from the record goes through `esc`.
 *
 * Layout: summary (counts, MISSED in red, run id, duration) → matrix scenario × OS build coloured
 * by the worst verdict → charts (over-report ratio and resync rate per build and per driver
 * version) → jobs, each with facts, steps, epochs with a block map strip, and a timeline.
 */
import type { Verdict } from '../verify/index.ts';
import { decodeCells } from './block-map.ts';
import type { Reporter } from './reporter.ts';
import type { BlockMap, EpochRecord, JobRecord, RunRecord, TimelineEvent } from './run-record.ts';
import { buildOf, driverOf, formatDuration, formatPercent, formatRatio, groupMetrics, overReportRatio, resyncRate, worstVerdict, type Metrics } from './metrics.ts';
import { asExpected, runOutcome } from './recorder.ts';
import { writeFileAtomic } from './write-file.ts';

/** Timeline rows shown per job (the full timeline is in the record and the artifact). */
export const MAX_HTML_TIMELINE_ROWS = 400;

const COLORS: Record<Verdict, string> = { EXACT: '#2e7d32', SUPERSET: '#689f38', RESYNC: '#f9a825', MISSED: '#c62828' };

export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A link to a run-relative artifact, or plain text when the path could be anything else (`javascript:`, `//host`). */
function link(path: string, text: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(path) || path.startsWith('/') || path.startsWith('\\')) return esc(text);
  return `<a href="${esc(path.split('/').map(encodeURIComponent).join('/'))}">${esc(text)}</a>`;
}

const CSS = `
:root{--exact:${COLORS.EXACT};--superset:${COLORS.SUPERSET};--resync:${COLORS.RESYNC};--missed:${COLORS.MISSED};--infra:#757575;--fg:#1b1b1b;--muted:#666;--line:#ddd}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;padding:0 24px 48px;background:#fafafa}
h1{font-size:22px;margin:20px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:14px;margin:14px 0 6px}
.summary{display:flex;flex-wrap:wrap;gap:10px;align-items:stretch;margin:12px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:110px}
.card .n{font-size:24px;font-weight:600}.card .l{color:var(--muted);font-size:12px}
.card.bad{border-color:var(--missed);background:#fdecea}.card.bad .n{color:var(--missed)}
.banner{display:inline-block;font-weight:700;padding:3px 10px;border-radius:4px;color:#fff}.banner.passed{background:var(--exact)}.banner.failed{background:var(--missed)}.banner.infra{background:var(--infra)}
.meta{color:var(--muted);font-size:12px}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}th{background:#f0f0f0;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.matrix td{text-align:center;min-width:120px;font-weight:600}
.v-EXACT{background:var(--exact);color:#fff}.v-SUPERSET{background:var(--superset);color:#fff}.v-RESYNC{background:var(--resync);color:#111}.v-MISSED{background:var(--missed);color:#fff}.v-none{background:#eee;color:#999}.v-caught{background:#e8f5e9;color:#1b5e20;outline:2px dashed var(--exact);outline-offset:-4px}.v-infra{background:var(--infra);color:#fff}
.matrix td small{display:block;font-weight:400;font-size:11px}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px}
.chart h3{margin:0 0 4px}
details.job{background:#fff;border:1px solid var(--line);border-left:5px solid var(--exact);border-radius:4px;margin:6px 0;padding:4px 10px}
details.job.unexpected{border-left-color:var(--missed)}details.job.infra-error{border-left-color:var(--infra)}
details.job>summary{cursor:pointer;display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
details.job>summary .id{font-weight:600}
.pill{display:inline-block;border-radius:3px;padding:0 6px;font-size:12px;font-weight:600}
.err{color:var(--missed);white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px}
pre,code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
.blockmap{display:block;width:100%;max-width:760px;height:36px;border:1px solid var(--line);background:#fff}
.legend span{display:inline-block;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
details.timeline{margin:8px 0}details.timeline>summary{cursor:pointer;font-weight:600}
.tl-svg{display:block;width:100%;max-width:960px;height:120px;background:#fff;border:1px solid var(--line)}
.filters button{margin-right:6px;padding:3px 10px;border:1px solid var(--line);background:#fff;border-radius:4px;cursor:pointer}.filters button.on{background:#333;color:#fff}
.hidden{display:none}
`;

// Filters and expand-all only; the page reads fine without it.
const JS = `
document.querySelectorAll('.filters button').forEach(function(b){b.addEventListener('click',function(){
  var f=b.getAttribute('data-filter');document.querySelectorAll('.filters button').forEach(function(x){x.classList.toggle('on',x===b)});
  document.querySelectorAll('details.job').forEach(function(d){var show=f==='all'||(f==='missed'?d.hasAttribute('data-missed'):d.classList.contains(f));d.classList.toggle('hidden',!show)});
})});
var ex=document.getElementById('expand-all');if(ex)ex.addEventListener('click',function(){var open=ex.getAttribute('data-open')!=='1';document.querySelectorAll('details.job:not(.hidden)').forEach(function(d){d.open=open});ex.setAttribute('data-open',open?'1':'0');ex.textContent=open?'Collapse all':'Expand all'});
`;

function card(n: string | number, label: string, bad = false, id?: string): string {
  return `<div class="card${bad ? ' bad' : ''}"${id ? ` id="${esc(id)}"` : ''}><div class="n">${esc(n)}</div><div class="l">${esc(label)}</div></div>`;
}

function summary(record: RunRecord): string {
  const t = record.totals;
  const outcome = runOutcome(record);
  const state = outcome === 'passed' && !t.unexpectedMissed ? 'passed' : outcome === 'infra-error' && !t.unexpectedMissed ? 'infra' : 'failed';
  const label = state === 'passed' ? 'PASSED' : state === 'failed' ? 'FAILED' : 'INFRASTRUCTURE ERRORS';
  return `<header>
<h1>cbt-harness run <span class="mono" id="run-id">${esc(record.runId)}</span> <span class="banner ${state}" id="run-status">${label}</span></h1>
<div class="meta">started ${esc(record.startedAt)} · duration ${esc(formatDuration(record.durationMs))} · seed ${esc(record.seed)} · harness ${esc(record.harness.version)}${record.config ? ` · config ${esc(record.config.name)}` : ''}${record.cancelled ? ' · <b>cancelled</b>' : ''}${record.labels ? Object.entries(record.labels).map(([k, v]) => ` · ${esc(k)}=${esc(v)}`).join('') : ''}</div>
<div class="summary" id="summary">
${card(t.jobs, 'jobs', false, 'count-jobs')}${card(t.passed, 'passed', false, 'count-passed')}${card(t.failed, t.expectedFailures ? `failed (${t.expectedFailures} as it must)` : 'failed', t.failed > t.expectedFailures, 'count-failed')}${card(t.infraErrors, 'infrastructure errors', false, 'count-infra')}${card(t.epochs, 'epochs', false, 'count-epochs')}
${t.expectedFailures || t.unexpectedPasses ? card(`${t.expectedFailures}/${t.expectedFailures + t.unexpectedPasses}`, t.unexpectedPasses ? `known-bad caught (${t.unexpectedPasses} NOT CAUGHT)` : 'known-bad caught', t.unexpectedPasses > 0, 'count-known-bad') : ''}
${card(t.verdicts.MISSED, t.unexpectedMissed === t.verdicts.MISSED ? 'MISSED' : `MISSED (${t.verdicts.MISSED - t.unexpectedMissed} expected)`, t.unexpectedMissed > 0, 'count-missed')}${card(t.verdicts.RESYNC, 'RESYNC', false, 'count-resync')}${card(t.verdicts.SUPERSET, 'SUPERSET', false, 'count-superset')}${card(t.verdicts.EXACT, 'EXACT', false, 'count-exact')}
</div>
</header>`;
}

function cellClass(m: Metrics): string {
  if (m.epochs === 0) return m.infraErrors ? 'v-infra' : 'v-none';
  return `v-${worstVerdict(m.verdicts)}`;
}

function matrix(record: RunRecord): string {
  const scenarios = [...new Set(record.jobs.map((j) => j.scenario.name))];
  const builds = [...new Set(record.jobs.map(buildOf))].sort();
  const cells = groupMetrics(record.jobs, (j) => `${j.scenario.name}\u0000${buildOf(j)}`);
  const knownBadCells = new Set(record.jobs.filter((j) => j.expectedStatus === 'failed').map((j) => `${j.scenario.name}\u0000${buildOf(j)}`));
  let html = '<table class="matrix" id="matrix"><thead><tr><th>scenario \\ OS build</th>';
  for (const b of builds) html += `<th>${esc(b)}</th>`;
  html += '</tr></thead><tbody>';
  for (const s of scenarios) {
    html += `<tr><th>${esc(s)}</th>`;
    for (const b of builds) {
      const m = cells.get(`${s}\u0000${b}`);
      if (!m) {
        html += '<td class="v-none">–</td>';
        continue;
      }
      const worst = m.epochs ? worstVerdict(m.verdicts) : null;
      const knownBad = knownBadCells.has(`${s}\u0000${b}`);
      const title = `${s} on ${b}: ${m.jobs} job(s), ${m.passed} passed, ${m.failed} failed${knownBad ? ' (known-bad: must fail)' : ''}, ${m.infraErrors} infra; EXACT ${m.verdicts.EXACT}, SUPERSET ${m.verdicts.SUPERSET}, RESYNC ${m.verdicts.RESYNC}, MISSED ${m.verdicts.MISSED}`;
      let text = worst ? `${worst}${m.verdicts[worst] && worst !== 'EXACT' ? ` ${m.verdicts[worst]}/${m.epochs}` : ''}` : 'infra error';
      // A known-bad tracker's cell is good when it failed: say "caught", never paint it red.
      let cls = cellClass(m);
      if (knownBad && m.epochs) {
        cls = m.unexpectedOutcomes ? 'v-MISSED' : 'v-caught';
        text = `${m.unexpectedOutcomes ? 'NOT CAUGHT' : 'caught'}: ${text}`;
      }
      const asExp = m.jobs - m.unexpectedOutcomes - m.infraErrors;
      html += `<td class="${cls}" data-scenario="${esc(s)}" data-build="${esc(b)}" data-verdict="${esc(worst ?? 'none')}"${knownBad ? ' data-known-bad=""' : ''} title="${esc(title)}">${esc(text)}<small>${asExp}/${m.jobs} as expected</small></td>`;
    }
    html += '</tr>';
  }
  return `${html}</tbody></table>`;
}

interface Bar {
  label: string;
  value: number | null;
  color: string;
  note?: string;
}

/** A horizontal bar chart in SVG. */
export function barChart(id: string, title: string, bars: Bar[], format: (v: number) => string, max?: number): string {
  const labelW = 230;
  const barW = 260;
  const rowH = 22;
  const width = labelW + barW + 70;
  const height = 8 + rowH * Math.max(1, bars.length);
  const top = max ?? Math.max(1e-9, ...bars.map((b) => b.value ?? 0));
  let body = '';
  bars.forEach((b, i) => {
    const y = 4 + i * rowH;
    const w = b.value === null ? 0 : Math.max(1, Math.round((barW * Math.min(b.value, top)) / top));
    body += `<text x="${labelW - 6}" y="${y + 15}" text-anchor="end" font-size="12">${esc(b.label)}</text>`;
    body += `<rect x="${labelW}" y="${y + 3}" width="${w}" height="${rowH - 8}" fill="${b.color}"><title>${esc(`${b.label}: ${b.value === null ? 'n/a' : format(b.value)}${b.note ? ` (${b.note})` : ''}`)}</title></rect>`;
    body += `<text x="${labelW + w + 4}" y="${y + 15}" font-size="12">${esc(b.value === null ? 'n/a' : format(b.value))}</text>`;
  });
  return `<div class="chart"><h3>${esc(title)}</h3><svg id="${esc(id)}" class="bar-chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}">${body}</svg></div>`;
}

function charts(record: RunRecord): string {
  const byBuild = [...groupMetrics(record.jobs, buildOf).entries()].sort(([a], [b]) => a.localeCompare(b));
  const byDriver = [...groupMetrics(record.jobs, driverOf).entries()].sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }));
  const over = (rows: Array<[string, Metrics]>) => rows.map(([label, m]) => ({ label, value: overReportRatio(m), color: m.unexpectedMissed ? COLORS.MISSED : COLORS.SUPERSET, note: `${m.claimedBlocks} claimed / ${m.changedBlocks} changed` }));
  const resync = (rows: Array<[string, Metrics]>) => rows.map(([label, m]) => ({ label, value: resyncRate(m), color: COLORS.RESYNC, note: `${m.verdicts.RESYNC} of ${m.epochs} epochs` }));
  return `<div class="charts">
${barChart('chart-over-build', 'Over-report ratio per OS build (claimed / changed)', over(byBuild), (v) => v.toFixed(2))}
${barChart('chart-resync-build', 'Resync rate per OS build', resync(byBuild), (v) => formatPercent(v), 1)}
${barChart('chart-over-driver', 'Over-report ratio per driver version', over(byDriver), (v) => v.toFixed(2))}
${barChart('chart-resync-driver', 'Resync rate per driver version', resync(byDriver), (v) => formatPercent(v), 1)}
</div>`;
}

/** The missed / extra / changed strip of one epoch: one row each, cells merged into runs. */
export function blockMapSvg(map: BlockMap, label: string): string {
  const rows: Array<[string, string, string]> = [
    ['changed', map.changed ?? '', '#1565c0'],
    ['extra', map.extra, COLORS.RESYNC],
    ['missed', map.missed, COLORS.MISSED],
  ];
  const cells = Math.max(1, map.cells);
  let body = '';
  rows.forEach(([name, enc, color], r) => {
    const levels = decodeCells(enc, map.cells);
    let i = 0;
    while (i < levels.length) {
      const lv = levels[i];
      let j = i + 1;
      while (j < levels.length && levels[j] === lv) j++;
      if (lv > 0) body += `<rect class="bm-${name}" x="${i}" y="${r}" width="${j - i}" height="0.9" fill="${color}" fill-opacity="${(0.25 + (0.75 * lv) / 15).toFixed(2)}"/>`;
      i = j;
    }
  });
  const title = `${label}: ${map.blocks} blocks, ${map.blocksPerCell} per cell; rows: changed, extra (claimed, unchanged), missed`;
  return `<svg class="blockmap" viewBox="0 0 ${cells} 3" preserveAspectRatio="none" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title><rect x="0" y="0" width="${cells}" height="3" fill="#fff"/>${body}</svg>`;
}

function eventText(e: TimelineEvent): string {
  switch (e.kind) {
    case 'qmp':
      return `${e.event}${e.data ? ` ${JSON.stringify(e.data)}` : ''}`;
    case 'guest':
    case 'host':
      return `${e.command} → ${e.exitCode === null ? 'killed' : `exit ${e.exitCode}`} in ${formatDuration(e.durationMs)}${e.stderr ? `\nstderr: ${e.stderr}` : ''}`;
    case 'step':
      return `step ${e.step} ${e.stepKind} ${e.phase}${e.ok === false ? ' (failed)' : ''}`;
    case 'epoch':
      return `epoch ${e.epoch} ${e.phase}`;
    case 'verdict':
      return `epoch ${e.epoch}: ${e.verdict}${e.acceptable ? '' : ' (not acceptable)'}`;
    case 'fault':
      return `${e.fault}${e.detail ? `: ${e.detail}` : ''}`;
    case 'note':
      return e.message;
    case 'phase':
      return `guest phase ${e.phase} (guest uptime ${e.uptimeS} s)`;
  }
}

const LANES: Array<[string, TimelineEvent['kind'][], string]> = [
  ['steps', ['step'], '#455a64'],
  ['QMP', ['qmp'], '#6a1b9a'],
  ['guest', ['guest', 'host', 'phase'], '#1565c0'],
  ['epochs', ['epoch', 'fault', 'note'], '#ef6c00'],
  ['verdicts', ['verdict'], '#2e7d32'],
];

function timelineSvg(job: JobRecord): string {
  const t0 = Date.parse(job.startedAt);
  const span = Math.max(1, Date.parse(job.endedAt) - t0);
  const W = 1000;
  const left = 70;
  const laneH = 22;
  let body = '';
  LANES.forEach(([name, kinds, color], lane) => {
    const y = 4 + lane * laneH;
    body += `<text x="4" y="${y + 14}" font-size="11" fill="#555">${esc(name)}</text><line x1="${left}" x2="${W}" y1="${y + 10}" y2="${y + 10}" stroke="#eee"/>`;
    for (const e of job.timeline) {
      if (!kinds.includes(e.kind)) continue;
      const x = left + ((W - left - 4) * Math.min(span, Math.max(0, Date.parse(e.at) - t0))) / span;
      const fill = e.kind === 'verdict' ? COLORS[e.verdict] : e.kind === 'fault' ? COLORS.MISSED : color;
      const dur = e.kind === 'guest' || e.kind === 'host' ? ((W - left - 4) * e.durationMs) / span : 0;
      const tip = `<title>${esc(`+${formatDuration(Math.max(0, Date.parse(e.at) - t0))} ${e.kind}: ${eventText(e)}`)}</title>`;
      if (dur >= 2) body += `<rect x="${(x - dur).toFixed(1)}" y="${y + 4}" width="${dur.toFixed(1)}" height="12" fill="${fill}" fill-opacity="0.6">${tip}</rect>`;
      else body += `<rect x="${(x - 1.5).toFixed(1)}" y="${y + 3}" width="3" height="14" fill="${fill}">${tip}</rect>`;
    }
  });
  const h = 8 + LANES.length * laneH;
  return `<svg class="tl-svg" viewBox="0 0 ${W} ${h}" preserveAspectRatio="none" style="height:${h}px" role="img" aria-label="timeline of ${esc(job.id)}">${body}</svg>`;
}

function timeline(job: JobRecord): string {
  const t0 = Date.parse(job.startedAt);
  const shown = job.timeline.slice(0, MAX_HTML_TIMELINE_ROWS);
  const more = job.timeline.length - shown.length + (job.timelineDropped ?? 0);
  let rows = '';
  for (const e of shown) {
    const cls = e.kind === 'verdict' ? ` class="v-${e.verdict}"` : '';
    rows += `<tr data-kind="${esc(e.kind)}"><td class="num mono">+${esc(formatDuration(Math.max(0, Date.parse(e.at) - t0)))}</td><td>${esc(e.kind)}</td><td${cls}><span class="mono" style="white-space:pre-wrap">${esc(eventText(e))}</span></td></tr>`;
  }
  return `<details class="timeline"><summary>Timeline (${job.timeline.length} event${job.timeline.length === 1 ? '' : 's'}${job.timelineDropped ? `, ${job.timelineDropped} more in the timeline file` : ''})</summary>
${timelineSvg(job)}
<table class="tl-table"><thead><tr><th>time</th><th>kind</th><th>event</th></tr></thead><tbody>${rows}</tbody></table>${more > 0 ? `<p class="meta">${more} more event(s)${job.artifacts.timeline ? ` in ${link(job.artifacts.timeline, job.artifacts.timeline)}` : ''}.</p>` : ''}
</details>`;
}

function epochRow(e: EpochRecord): string {
  const ranges = e.missed.map(([f, c]) => `${f}+${c}`).join(', ') + (e.missedRanges > e.missed.length ? ` … (${e.missedRanges} ranges)` : '');
  return `<tr class="epoch" data-verdict="${e.verdict}"><td class="num">${e.index}${e.id !== undefined ? ` <span class="meta">(${esc(e.id)})</span>` : ''}</td><td class="v-${e.verdict}">${e.verdict}</td><td>${esc(e.expected.join('|') || 'not MISSED')}${e.acceptable ? '' : ' <b class="err">✗</b>'}</td><td class="num">${e.changedBlocks}</td><td class="num">${e.claimedBlocks}</td><td class="num">${e.missedBlocks}</td><td class="num">${e.extraBlocks}</td><td class="num">${esc(e.granularity)}</td><td class="num">${esc(formatRatio(e.overReportRatio))}</td><td>${esc(e.claim.state)}${e.claim.reason ? `: ${esc(e.claim.reason)}` : ''}</td><td class="mono">${esc(ranges)}</td></tr>${e.map ? `<tr class="map-row"><td colspan="11">${blockMapSvg(e.map, `epoch ${e.index}`)}</td></tr>` : ''}`;
}

function jobSection(job: JobRecord, i: number): string {
  const missed = job.epochs.some((e) => e.verdict === 'MISSED');
  const verdicts = job.epochs.map((e) => `<span class="pill v-${e.verdict}">${e.verdict}</span>`).join(' ');
  const facts: Array<[string, string]> = [
    ['scenario', `${job.scenario.name} (${job.scenario.file})${job.scenario.description ? ` — ${job.scenario.description}` : ''}`],
    ['guest', `${job.guest.name}: ${job.guest.os.build}${job.guest.os.kernel ? ` (kernel ${job.guest.os.kernel})` : ''}`],
    ['tracker', `${job.guest.tracker.name} ${job.guest.tracker.version} (decoder ${job.guest.tracker.decoder})`],
    ['host', job.host ? `${job.host.name} (${job.host.type})` : '–'],
    ['accel', job.accel ? `${job.accel.used}${job.accel.requested ? ` (asked ${job.accel.requested})` : ''}${job.accel.reason ? ` — ${job.accel.reason}` : ''}` : '–'],
    ['seed / repeat', `${job.seed} / #${job.repeat}`],
    ['time', `${job.startedAt} → ${job.endedAt} (${formatDuration(job.durationMs)})`],
  ];
  const artifacts = [job.artifacts.serialLog && ['serial log', job.artifacts.serialLog], job.artifacts.timeline && ['timeline', job.artifacts.timeline], ...(job.artifacts.other ?? []).map((a) => [a.name, a.path])].filter(Boolean) as Array<[string, string]>;
  if (artifacts.length) facts.push(['artifacts', '']);
  const factRows = facts.map(([k, v]) => (k === 'artifacts' ? `<tr><th>artifacts</th><td>${artifacts.map(([n, p]) => link(p, n)).join(' · ')}</td></tr>` : `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`)).join('');
  const steps = job.steps.map((s) => `<tr><td class="num">${s.index}</td><td>${esc(s.kind)}</td><td class="mono">${esc(s.args ? JSON.stringify(s.args) : '')}</td><td class="num">${esc(formatDuration(s.durationMs))}</td><td>${s.ok ? 'ok' : s.allowFailure ? 'failed (allowed)' : '<b class="err">failed</b>'}</td><td class="err">${esc(s.error ?? '')}</td></tr>`).join('');
  const attempts = job.attempts.length > 1 || job.attempts.some((a) => a.outcome !== 'ok') ? `<h3>Attempts</h3><table><thead><tr><th>#</th><th>host</th><th>outcome</th><th>duration</th><th>error</th></tr></thead><tbody>${job.attempts.map((a) => `<tr><td class="num">${a.attempt}</td><td>${esc(a.host)}</td><td>${esc(a.outcome)}${a.speculative ? ' (backup copy)' : ''}</td><td class="num">${esc(formatDuration(a.durationMs))}</td><td class="err">${esc(a.error ?? '')}</td></tr>`).join('')}</tbody></table>` : '';
  const epochs = job.epochs.length
    ? `<h3>Epochs</h3><div class="legend"><span><i style="background:#1565c0"></i>changed</span><span><i style="background:${COLORS.RESYNC}"></i>extra (claimed, unchanged)</span><span><i style="background:${COLORS.MISSED}"></i>missed</span></div><table class="epochs"><thead><tr><th>epoch</th><th>verdict</th><th>expected</th><th>changed</th><th>claimed</th><th>missed</th><th>extra</th><th>block bytes</th><th>over-report</th><th>claim</th><th>first missed ranges (blocks)</th></tr></thead><tbody>${job.epochs.map(epochRow).join('')}</tbody></table>`
    : '';
  const ok = asExpected(job);
  const label = job.expectedStatus === 'failed' ? (ok ? 'failed as it must' : job.status === 'passed' ? 'NOT CAUGHT' : job.status) : job.status;
  return `<details class="job ${job.status}${ok === false ? ' unexpected' : ''}" id="job-${i}"${missed ? ' data-missed=""' : ''} data-job-id="${esc(job.id)}">
<summary><span class="pill ${ok ? 'v-EXACT' : ok === false ? 'v-MISSED' : 'v-infra'}">${esc(label)}</span><span class="id">${esc(job.id)}</span><span>${esc(buildOf(job))}</span><span>${esc(driverOf(job))}</span>${verdicts}<span class="meta">${esc(formatDuration(job.durationMs))}</span></summary>
${job.error ? `<p class="err">${esc(job.error)}</p>` : ''}
<table class="facts">${factRows}</table>
${attempts}
<h3>Steps</h3><table class="steps"><thead><tr><th>#</th><th>kind</th><th>args</th><th>duration</th><th>result</th><th>error</th></tr></thead><tbody>${steps}</tbody></table>
${epochs}
${timeline(job)}
</details>`;
}

export function renderHtml(record: RunRecord): string {
  const t = record.totals;
  // Problems first: a person opens the report to see what failed.
  const order = record.jobs.map((j, i) => [j, i] as const).sort(([a, ia], [b, ib]) => rank(a) - rank(b) || ia - ib);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`cbt-harness ${record.runId}: ${runOutcome(record) === 'failed' || t.unexpectedMissed ? 'FAILED' : runOutcome(record) === 'infra-error' ? 'infrastructure errors' : 'passed'}`)}</title>
<style>${CSS}</style>
</head>
<body>
${summary(record)}
<h2>Scenario × OS build</h2>
${matrix(record)}
<h2>Accuracy</h2>
${charts(record)}
<h2>Jobs</h2>
<div class="filters"><button class="on" data-filter="all">all (${t.jobs})</button><button data-filter="failed">failed (${t.failed})</button><button data-filter="missed">MISSED</button><button data-filter="infra-error">infrastructure (${t.infraErrors})</button><button id="expand-all">Expand all</button></div>
<div id="jobs">
${order.map(([j, i]) => jobSection(j, i)).join('\n')}
</div>
<script>${JS}</script>
</body>
</html>
`;
}

function rank(j: JobRecord): number {
  const ok = asExpected(j);
  return ok === false ? 0 : ok === null ? 1 : 2;
}

export class HtmlReporter implements Reporter {
  readonly name = 'html';
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  async onEnd(record: RunRecord): Promise<void> {
    await writeFileAtomic(this.#file, renderHtml(record));
  }
}
