// The parts of Apache ECharts dogear's pages use, rendered as SVG so chart text is in the DOM
// (readable by screen readers and checkable by tests). Bundled by vendor.sh.
import * as echarts from "echarts/core";
import { BarChart, HeatmapChart, LineChart, ScatterChart } from "echarts/charts";
import {
  AriaComponent, CalendarComponent, GridComponent, LegendComponent, TitleComponent,
  TooltipComponent, VisualMapComponent,
} from "echarts/components";
import { SVGRenderer } from "echarts/renderers";

echarts.use([BarChart, HeatmapChart, LineChart, ScatterChart, AriaComponent, CalendarComponent, GridComponent,
  LegendComponent, TitleComponent, TooltipComponent, VisualMapComponent, SVGRenderer]);
window.echarts = echarts;
