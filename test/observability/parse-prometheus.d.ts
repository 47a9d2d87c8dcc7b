/** The exposition-format parser used by the metrics tests (the package ships no types). */
declare module "parse-prometheus-text-format" {
  /** Metric families of a Prometheus text exposition. */
  export default function parse(text: string): unknown[];
}
