{{- define "hoard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hoard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hoard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hoard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hoard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hoard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "hoard.scaleOut" -}}
{{- if eq .Values.mode "scaleOut" -}}true{{- else if eq .Values.mode "embedded" -}}{{- else -}}{{- fail "mode must be embedded or scaleOut" -}}{{- end -}}
{{- end -}}

{{- /* Segments in an S3 bucket: always when scaled out, on request when embedded. */ -}}
{{- define "hoard.s3Segments" -}}
{{- if or (include "hoard.scaleOut" .) (eq .Values.segments.backend "s3") -}}true{{- end -}}
{{- end -}}

{{- define "hoard.credentialsSecret" -}}
{{- .Values.credentials.existingSecret | default (include "hoard.fullname" .) -}}
{{- end -}}

{{- define "hoard.postgresSecret" -}}
{{- .Values.postgres.existingSecret | default (include "hoard.fullname" .) -}}
{{- end -}}

{{- define "hoard.s3Secret" -}}
{{- .Values.segments.s3.existingSecret | default (include "hoard.fullname" .) -}}
{{- end -}}

{{- define "hoard.probeScheme" -}}
{{- if .Values.tls.enabled -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{- /* The pod of both modes. */ -}}
{{- define "hoard.podTemplate" -}}
metadata:
  labels:
    {{- include "hoard.selectorLabels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: hoard
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --config
        - /etc/hoard/hoard.toml
        - --listen
        - "0.0.0.0:{{ .Values.service.port }}"
        - --data-dir
        - /var/lib/hoard
      env:
        - name: HOARD_ROOT_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "hoard.credentialsSecret" . }}
              key: HOARD_ROOT_ACCESS_KEY
        - name: HOARD_ROOT_SECRET_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "hoard.credentialsSecret" . }}
              key: HOARD_ROOT_SECRET_KEY
        - name: HOARD_SECRETS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "hoard.credentialsSecret" . }}
              key: HOARD_SECRETS_KEY
        {{- if include "hoard.scaleOut" . }}
        - name: HOARD_META
          valueFrom:
            secretKeyRef:
              name: {{ include "hoard.postgresSecret" . }}
              key: {{ .Values.postgres.urlKey }}
        - name: HOARD_META_CONNECTIONS
          value: {{ .Values.postgres.connections | quote }}
        - name: HOARD_META_LEASE_SECS
          value: {{ .Values.postgres.leaseSecs | quote }}
        {{- if .Values.postgres.caSecret }}
        - name: HOARD_META_CA
          value: /etc/hoard/postgres-ca/ca.crt
        {{- end }}
        {{- end }}
        {{- if include "hoard.s3Segments" . }}
        - name: AWS_ACCESS_KEY_ID
          valueFrom:
            secretKeyRef:
              name: {{ include "hoard.s3Secret" . }}
              key: AWS_ACCESS_KEY_ID
        - name: AWS_SECRET_ACCESS_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "hoard.s3Secret" . }}
              key: AWS_SECRET_ACCESS_KEY
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: HOARD_TLS_CERT
          value: /etc/hoard/tls/tls.crt
        - name: HOARD_TLS_KEY
          value: /etc/hoard/tls/tls.key
        {{- end }}
      ports:
        - name: s3
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /health
          port: s3
          scheme: {{ include "hoard.probeScheme" . }}
        periodSeconds: 10
        failureThreshold: 6
      readinessProbe:
        httpGet:
          path: /ready
          port: s3
          scheme: {{ include "hoard.probeScheme" . }}
        periodSeconds: 5
        timeoutSeconds: 8
        failureThreshold: 3
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/hoard
          readOnly: true
        - name: data
          mountPath: /var/lib/hoard
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/hoard/tls
          readOnly: true
        {{- end }}
        {{- if and (include "hoard.scaleOut" .) .Values.postgres.caSecret }}
        - name: postgres-ca
          mountPath: /etc/hoard/postgres-ca
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "hoard.fullname" . }}
    - name: tmp
      emptyDir: {}
    {{- if include "hoard.scaleOut" . }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ required "tls.secretName is required with tls.enabled" .Values.tls.secretName }}
    {{- end }}
    {{- if and (include "hoard.scaleOut" .) .Values.postgres.caSecret }}
    - name: postgres-ca
      secret:
        secretName: {{ .Values.postgres.caSecret }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
