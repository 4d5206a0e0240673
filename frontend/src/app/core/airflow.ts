import { DOCUMENT, InjectionToken, inject } from '@angular/core';

/** Base URL of the Airflow UI (same host as the page, port 8080 as `make demo` runs it). */
export const AIRFLOW_UI_URL = new InjectionToken<string>('AIRFLOW_UI_URL', {
  providedIn: 'root',
  factory: () => {
    const location = inject(DOCUMENT).location;
    return `${location.protocol}//${location.hostname}:8080`;
  },
});

export const STREAMING_DAG_ID = 'video_streaming_pipeline';

/** Link to one run of the streaming DAG in the Airflow 3 UI. */
export function airflowRunUrl(base: string, runId: string, dagId = STREAMING_DAG_ID): string {
  return `${base.replace(/\/$/, '')}/dags/${encodeURIComponent(dagId)}/runs/${encodeURIComponent(runId)}`;
}
