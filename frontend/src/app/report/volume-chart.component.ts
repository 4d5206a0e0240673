import { ChangeDetectionStrategy, Component, computed, input } from '@angular/core';

import { WindowReport } from '../core/models';
import { volumeChart } from './volume-chart';

let nextId = 0;

/**
 * Vehicles per interval stacked by direction, as inline SVG: the picture is one image with a
 * text alternative (title + description); the legend is HTML beside it; every number is in the
 * window table.
 */
@Component({
  selector: 'app-volume-chart',
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    @let c = chart();
    <svg
      class="volume-chart"
      data-testid="window-chart"
      role="img"
      [attr.viewBox]="'0 0 ' + c.width + ' ' + c.height"
      [attr.aria-labelledby]="ids.title + ' ' + ids.desc"
      preserveAspectRatio="xMidYMid meet"
    >
      <title [attr.id]="ids.title">{{ title() }}</title>
      <desc [attr.id]="ids.desc">{{ c.description }}</desc>
      <g class="grid">
        @for (t of c.ticks; track t.value) {
          <line
            [attr.x1]="c.plot.x"
            [attr.x2]="c.plot.x + c.plot.width"
            [attr.y1]="t.y"
            [attr.y2]="t.y"
          />
          <text [attr.x]="c.plot.x - 6" [attr.y]="t.y + 4" text-anchor="end">{{ t.value }}</text>
        }
      </g>
      @for (bar of c.bars; track bar.key) {
        <g class="bar" [attr.data-total]="bar.total">
          @for (s of bar.segments; track s.direction) {
            <rect
              [attr.x]="bar.x"
              [attr.y]="s.y"
              [attr.width]="bar.width"
              [attr.height]="s.height"
              [attr.fill]="s.colour"
              [attr.data-direction]="s.direction"
              [attr.data-value]="s.value"
            >
              <title>{{ bar.label }} {{ s.label }}: {{ s.value }}</title>
            </rect>
          }
        </g>
      }
      <line
        class="axis"
        [attr.x1]="c.plot.x"
        [attr.x2]="c.plot.x + c.plot.width"
        [attr.y1]="c.plot.y + c.plot.height"
        [attr.y2]="c.plot.y + c.plot.height"
      />
      @for (l of c.xLabels; track l.x) {
        <text
          class="x-label"
          [attr.x]="l.x"
          [attr.y]="c.plot.y + c.plot.height + 16"
          text-anchor="middle"
        >
          {{ l.text }}
        </text>
      }
      <text class="y-name" x="4" y="12">vehicles</text>
    </svg>
    <ul class="legend" aria-label="Directions of travel" data-testid="window-legend">
      @for (item of c.legend; track item.direction) {
        <li>
          <span class="swatch" aria-hidden="true" [style.background]="item.colour"></span>
          {{ item.label }} <span class="muted">({{ item.total }})</span>
        </li>
      }
    </ul>
  `,
  styles: `
    :host {
      display: block;
    }
    .volume-chart {
      width: 100%;
      height: auto;
      display: block;
      font-size: 12px;
    }
    .grid line {
      stroke: #dde3e9;
    }
    .axis {
      stroke: #4a5561;
    }
    text {
      fill: #4a5561;
    }
    .legend {
      display: flex;
      flex-wrap: wrap;
      gap: 0.25rem 1rem;
      list-style: none;
      margin: 0.5rem 0 0;
      padding: 0;
      font-size: 0.875rem;
    }
    .swatch {
      display: inline-block;
      width: 0.9rem;
      height: 0.9rem;
      border-radius: 2px;
      vertical-align: -0.1rem;
      margin-right: 0.25rem;
    }
  `,
})
export class VolumeChartComponent {
  readonly report = input.required<WindowReport>();

  readonly chart = computed(() => volumeChart(this.report()));
  readonly title = computed(() => {
    const minutes = Math.round((this.report().interval_s || 0) / 60);
    const per =
      minutes === 60 ? 'hour' : minutes > 60 ? `${minutes / 60} hours` : `${minutes} minutes`;
    return `Vehicles per ${per}, stacked by direction of travel`;
  });
  protected readonly ids = {
    title: `volume-chart-title-${++nextId}`,
    desc: `volume-chart-desc-${nextId}`,
  };
}
