/** A terminal table with box-drawing borders: all the CLI needs of a table package. */
export type Cell = string | number;

export function renderTable(head: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const cells = [head, ...rows].map((r) => head.map((_, i) => String(r[i] ?? '')));
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const rule = (l: string, m: string, r: string) => l + widths.map((w) => '─'.repeat(w + 2)).join(m) + r;
  const line = (r: string[]) => '│' + r.map((c, i) => ` ${c.padEnd(widths[i]!)} `).join('│') + '│';
  const [top, ...body] = cells;
  return [rule('┌', '┬', '┐'), line(top!), rule('├', '┼', '┤'), ...body.map(line), rule('└', '┴', '┘')].join('\n');
}
