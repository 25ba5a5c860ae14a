/**
 * The bench's charts as inline SVG, written directly: grouped bar charts in a grid of
 * panels, each panel with its own y scale (figures differ by orders of magnitude between
 * sizes and kernels), a legend, and each bar's value as its tooltip.
 */

/** One bar; its key picks the colour and the legend entry. */
export interface Bar {
  key: string;
  value: number;
}
/** Bars side by side, labelled underneath. */
export interface BarGroup {
  label: string;
  bars: Bar[];
}
/** One panel: its own y axis from 0 to a round number above its highest bar. */
export interface Panel {
  title: string;
  groups: BarGroup[];
}
export interface BarChart {
  title: string;
  yTitle: string;
  xTitle?: string;
  /** Rows of panels (e.g. one row per kernel), each with an optional heading. */
  rows: Array<{ title?: string; panels: Panel[] }>;
  /** Legend order; keys not listed are appended in order of appearance. */
  keys?: string[];
}

// Tableau 10, the palette vega-lite used for these charts.
const COLOURS = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac'];
const BAR = 16;
const GROUP_GAP = 14;
const PANEL_H = 220;
const AXIS_W = 56;
const PANEL_GAP = 24;
const LABEL_H = 34;
const TITLE_H = 30;
const ROW_TITLE_H = 20;
const PANEL_TITLE_H = 18;

export const esc = (s: string): string =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** 1.2k, 3.4M: tick labels stay short. */
export function short(n: number): string {
  const a = Math.abs(n);
  const t = (x: number) => String(Number(x.toFixed(x < 10 ? 1 : 0)));
  return a >= 1e9 ? `${t(n / 1e9)}G` : a >= 1e6 ? `${t(n / 1e6)}M` : a >= 1e3 ? `${t(n / 1e3)}k` : t(n);
}

/** A tick step of 1, 2 or 5 times a power of ten giving about `count` ticks up to max. */
export function tickStep(max: number, count = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

export function barChartSvg(c: BarChart): string {
  const keys = [...(c.keys ?? [])];
  for (const r of c.rows) for (const p of r.panels) for (const g of p.groups) for (const b of g.bars) if (!keys.includes(b.key)) keys.push(b.key);
  const colour = (k: string) => COLOURS[keys.indexOf(k) % COLOURS.length]!;
  const panelW = (p: Panel) => Math.max(90, p.groups.reduce((a, g) => a + g.bars.length * BAR + GROUP_GAP, GROUP_GAP));
  const rowW = (r: BarChart['rows'][number]) => r.panels.reduce((a, p) => a + AXIS_W + panelW(p) + PANEL_GAP, 0);
  const gridW = Math.max(0, ...c.rows.map(rowW));
  const legendX = gridW + 10;
  const legendW = 12 + 7 * Math.max(0, ...keys.map((k) => k.length)) + 20;
  const rowH = PANEL_TITLE_H + PANEL_H + LABEL_H;
  const out: string[] = [];
  let y = TITLE_H;
  for (const row of c.rows) {
    if (row.title) {
      out.push(`<text x="0" y="${y + 14}" font-weight="bold">${esc(row.title)}</text>`);
      y += ROW_TITLE_H;
    }
    let x = 0;
    for (const p of row.panels) {
      const w = panelW(p);
      const top = y + PANEL_TITLE_H;
      const left = x + AXIS_W;
      const max = Math.max(0, ...p.groups.flatMap((g) => g.bars.map((b) => b.value)));
      const step = tickStep(max);
      const yMax = Math.max(step, Math.ceil(max / step) * step);
      const yOf = (v: number) => top + PANEL_H - (PANEL_H * v) / yMax;
      out.push(`<text x="${left + w / 2}" y="${y + 12}" text-anchor="middle">${esc(p.title)}</text>`);
      for (let t = 0; t <= yMax + step / 2; t += step) {
        const ty = yOf(t).toFixed(1);
        out.push(`<line x1="${left}" x2="${left + w}" y1="${ty}" y2="${ty}" stroke="#ddd"/>`);
        out.push(`<text x="${left - 4}" y="${ty}" dy="0.32em" text-anchor="end" font-size="10">${short(t)}</text>`);
      }
      out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + PANEL_H}" stroke="#888"/>`);
      let gx = left + GROUP_GAP;
      for (const g of p.groups) {
        g.bars.forEach((b, i) => {
          const by = yOf(b.value);
          out.push(
            `<rect x="${gx + i * BAR}" y="${by.toFixed(1)}" width="${BAR - 2}" height="${(top + PANEL_H - by).toFixed(1)}" fill="${colour(b.key)}">` +
              `<title>${esc(`${b.key}${g.label ? `, ${g.label}` : ''}: ${b.value.toLocaleString('en-US')}`)}</title></rect>`,
          );
        });
        if (g.label)
          out.push(`<text x="${gx + (g.bars.length * BAR) / 2}" y="${top + PANEL_H + 14}" text-anchor="middle" font-size="11">${esc(g.label)}</text>`);
        gx += g.bars.length * BAR + GROUP_GAP;
      }
      out.push(`<line x1="${left}" x2="${left + w}" y1="${top + PANEL_H}" y2="${top + PANEL_H}" stroke="#888"/>`);
      out.push(
        `<text transform="translate(${x + 12},${top + PANEL_H / 2}) rotate(-90)" text-anchor="middle" font-size="11">${esc(c.yTitle)}</text>`,
      );
      if (c.xTitle)
        out.push(`<text x="${left + w / 2}" y="${top + PANEL_H + 30}" text-anchor="middle" font-size="11">${esc(c.xTitle)}</text>`);
      x += AXIS_W + w + PANEL_GAP;
    }
    y += rowH;
  }
  keys.forEach((k, i) => {
    const ly = TITLE_H + i * 18;
    out.push(`<rect x="${legendX}" y="${ly}" width="12" height="12" fill="${colour(k)}"/>`);
    out.push(`<text x="${legendX + 18}" y="${ly + 10}" font-size="11">${esc(k)}</text>`);
  });
  const width = legendX + legendW;
  const height = Math.max(y, TITLE_H + keys.length * 18) + 4;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="system-ui,sans-serif" font-size="12">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<text x="0" y="18" font-size="14" font-weight="bold">${esc(c.title)}</text>` +
    out.join('') +
    `</svg>`
  );
}
