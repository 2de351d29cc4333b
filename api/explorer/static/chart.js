// The events-over-time bar chart: plain SVG, one bar per bucket eventStats returns, placed on a time
// axis (so empty buckets show as gaps, not as missing bars).

const SVG = "http://www.w3.org/2000/svg";

// Approximate lengths, to pick a bucket for a time range and to size bars (calendar months vary).
const BUCKET_SECONDS = {
  MINUTE: 60,
  HOUR: 3600,
  DAY: 86400,
  WEEK: 7 * 86400,
  MONTH: 30.436875 * 86400,
  QUARTER: 91.310625 * 86400,
  YEAR: 365.2425 * 86400,
};
export const MAX_BARS = 60;

// The smallest of the server's TimeBucket values giving at most MAX_BARS buckets over the range.
export function chooseBucket(bucketNames, rangeSeconds) {
  const known = bucketNames
    .filter((name) => name in BUCKET_SECONDS)
    .sort((a, b) => BUCKET_SECONDS[a] - BUCKET_SECONDS[b]);
  return known.find((name) => rangeSeconds / BUCKET_SECONDS[name] <= MAX_BARS) ?? known.at(-1) ?? null;
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) element.setAttribute(attribute, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function bucketLabel(startIso, bucket) {
  const iso = new Date(startIso).toISOString();
  if (bucket === "MINUTE" || bucket === "HOUR") return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
  if (bucket === "MONTH" || bucket === "QUARTER") return iso.slice(0, 7);
  if (bucket === "YEAR") return iso.slice(0, 4);
  return iso.slice(0, 10);
}

// Replace `container`'s content with a bar chart of `rows` ({bucket, count}) in `bucket`-sized buckets.
export function drawBarChart(container, rows, bucket) {
  const width = 800;
  const height = 200;
  const margin = { top: 12, right: 12, bottom: 26, left: 52 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const bucketMs = (BUCKET_SECONDS[bucket] ?? 3600) * 1000;
  const sorted = [...rows].sort((a, b) => Date.parse(a.bucket) - Date.parse(b.bucket));
  const starts = sorted.map((row) => Date.parse(row.bucket));
  const counts = sorted.map((row) => Number(row.count));
  const timeStart = Math.min(...starts);
  const timeEnd = Math.max(...starts) + bucketMs;
  const maxCount = Math.max(1, ...counts);
  const x = (time) => margin.left + ((time - timeStart) / (timeEnd - timeStart)) * plotWidth;

  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": `Events per ${bucket.toLowerCase()}: ${sorted.length} buckets with events`,
  });
  const baseline = margin.top + plotHeight;
  svg.append(
    svgElement("line", { x1: margin.left, y1: baseline, x2: width - margin.right, y2: baseline, class: "axis" }),
    svgElement("line", { x1: margin.left, y1: margin.top, x2: margin.left, y2: baseline, class: "axis" }),
    svgElement("text", { x: margin.left - 6, y: margin.top + 4, class: "label end" }, String(maxCount)),
    svgElement("text", { x: margin.left - 6, y: baseline, class: "label end" }, "0"),
    svgElement("text", { x: margin.left, y: height - 6, class: "label" }, bucketLabel(sorted[0].bucket, bucket)),
  );
  if (sorted.length > 1) {
    const lastLabel = bucketLabel(sorted.at(-1).bucket, bucket);
    svg.append(svgElement("text", { x: width - margin.right, y: height - 6, class: "label end" }, lastLabel));
  }
  sorted.forEach((row, index) => {
    const left = x(starts[index]);
    const next = index + 1 < starts.length ? starts[index + 1] : timeEnd;
    const barWidth = Math.max(1, Math.min(x(starts[index] + bucketMs), x(next)) - left - 1);
    const barHeight = Math.max(1, (counts[index] / maxCount) * plotHeight);
    const bar = svgElement("rect", {
      x: left.toFixed(2),
      y: (baseline - barHeight).toFixed(2),
      width: barWidth.toFixed(2),
      height: barHeight.toFixed(2),
      class: "bar",
      "data-bucket": row.bucket,
      "data-count": counts[index],
    });
    bar.append(svgElement("title", {}, `${bucketLabel(row.bucket, bucket)}: ${counts[index]} events`));
    svg.append(bar);
  });
  container.replaceChildren(svg);
}
