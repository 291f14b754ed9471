// The dashboard's charts, drawn with Chart.js 4 (bundled; only the bar chart parts are
// registered, which keeps app.js small). Animation is off: the charts are redrawn on live
// updates, and a chart that moves after the data arrived only distracts.
import { h, type ComponentChild } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

/** One bar series: its legend label, one value per label of the chart, its colour. */
export interface Series {
  label: string;
  data: number[];
  color: string;
}

/** A bar chart titled `title`; `stacked` stacks the series. Redrawn when `labels` or `series` change. */
export function BarChart(props: { title: string; labels: string[]; series: Series[]; stacked?: boolean; id: string }): ComponentChild {
  const canvas = useRef<HTMLCanvasElement>(null);
  const chart = useRef<Chart<'bar'> | null>(null);
  useEffect(() => {
    const stacked = props.stacked ?? false;
    chart.current = new Chart(canvas.current!, {
      type: 'bar',
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { legend: { display: props.series.length > 1, position: 'bottom' } },
        scales: { x: { stacked, ticks: { maxRotation: 0, autoSkipPadding: 12 } }, y: { stacked, beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
    return () => chart.current?.destroy();
  }, []);
  useEffect(() => {
    const c = chart.current;
    if (!c) return;
    c.data.labels = props.labels;
    c.data.datasets = props.series.map((s) => ({ label: s.label, data: s.data, backgroundColor: s.color }));
    c.update('none');
  }, [props.labels, props.series]);
  return h(
    'section',
    { class: 'chart', id: props.id },
    h('h3', null, props.title),
    h('div', { class: 'chart-box' }, h('canvas', { ref: canvas, role: 'img', 'aria-label': props.title })),
  );
}
