{{/* Common names and labels. */}}
{{- define "berth.fullname" -}}
{{- printf "%s" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "berth.labels" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "berth.selector" -}}
app.kubernetes.io/name: berth
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* An image reference from {repository, tag, digest}; the digest wins. */}}
{{- define "berth.imageRef" -}}
{{- if .digest -}}{{ .repository }}@{{ .digest }}{{- else -}}{{ .repository }}:{{ .tag }}{{- end -}}
{{- end -}}

{{- define "berth.image" -}}
{{- include "berth.imageRef" (dict "repository" .Values.image.repository "tag" (.Values.image.tag | default .Chart.AppVersion) "digest" .Values.image.digest) -}}
{{- end -}}

{{/* Where the node plugin's CSI socket lives: the same path on the host and in the pod. */}}
{{- define "berth.pluginDir" -}}
{{ .Values.kubeletDir }}/plugins/{{ .Values.driverName }}
{{- end -}}

{{- define "berth.nodeSocket" -}}
{{ include "berth.pluginDir" . }}/csi.sock
{{- end -}}

{{/* The berth container shared by the node DaemonSet in both modes. */}}
{{- define "berth.nodeContainer" -}}
- name: berth
  image: {{ include "berth.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - --mode={{ if eq .Values.mode "allInOne" }}all{{ else }}node{{ end }}
    - --endpoint=unix://{{ include "berth.nodeSocket" . }}
    - --nodeid=$(KUBE_NODE_NAME)
    - --drivername={{ .Values.driverName }}
    - --pool-dir={{ .Values.localPool.hostPath }}
    - --kubelet-dir={{ .Values.kubeletDir }}
    - --max-volumes-per-node={{ .Values.node.maxVolumesPerNode }}
    {{- with .Values.node.mountedAtDirs }}
    - --mounted-at-dirs={{ join "," . }}
    {{- end }}
    - --log-level={{ .Values.logLevel }}
    - --self-register={{ .Values.node.selfRegistration }}
    - --kubelet-registration-path={{ include "berth.nodeSocket" . }}
  env:
    - name: KUBE_NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
  securityContext:
    privileged: true
  ports:
    - name: healthz
      containerPort: {{ .Values.sidecars.livenessProbe.port }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /healthz
      port: healthz
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 5
  {{- with .Values.node.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: kubelet-dir
      mountPath: {{ .Values.kubeletDir }}
      mountPropagation: Bidirectional
    - name: dev
      mountPath: /dev
    - name: pool
      mountPath: {{ .Values.localPool.hostPath }}
      mountPropagation: Bidirectional
    {{- range $i, $dir := .Values.node.mountedAtDirs }}
    - name: mounted-at-{{ $i }}
      mountPath: {{ $dir }}
      mountPropagation: HostToContainer
    {{- end }}
{{- end -}}

{{- define "berth.livenessProbeContainer" -}}
- name: liveness-probe
  image: {{ include "berth.imageRef" .Values.sidecars.livenessProbe }}
  imagePullPolicy: {{ .Values.sidecars.livenessProbe.pullPolicy }}
  args:
    - --csi-address={{ .socket }}
    - --health-port={{ .Values.sidecars.livenessProbe.port }}
  {{- with .Values.sidecars.livenessProbe.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ .volume }}
      mountPath: {{ dir .socket }}
{{- end -}}

{{/* provisioner, attacher and resizer, talking to `socket` in volume `volume`. */}}
{{- define "berth.controllerSidecars" -}}
- name: csi-provisioner
  image: {{ include "berth.imageRef" .Values.sidecars.provisioner }}
  imagePullPolicy: {{ .Values.sidecars.provisioner.pullPolicy }}
  args:
    - --csi-address={{ .socket }}
    - --feature-gates=Topology=true
    - --extra-create-metadata
    - --default-fstype=
    - --timeout=120s
    {{- if .nodeDeployment }}
    - --node-deployment=true
    - --leader-election=false
    {{- else }}
    - --leader-election={{ .Values.controller.leaderElection }}
    - --leader-election-namespace=$(NAMESPACE)
    {{- end }}
  env:
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
  {{- with .Values.sidecars.provisioner.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ .volume }}
      mountPath: {{ dir .socket }}
- name: csi-attacher
  image: {{ include "berth.imageRef" .Values.sidecars.attacher }}
  imagePullPolicy: {{ .Values.sidecars.attacher.pullPolicy }}
  args:
    - --csi-address={{ .socket }}
    - --timeout=120s
    - --leader-election={{ and .Values.controller.leaderElection (not .nodeDeployment) }}
    - --leader-election-namespace=$(NAMESPACE)
  env:
    - name: NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
  {{- with .Values.sidecars.attacher.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ .volume }}
      mountPath: {{ dir .socket }}
- name: csi-resizer
  image: {{ include "berth.imageRef" .Values.sidecars.resizer }}
  imagePullPolicy: {{ .Values.sidecars.resizer.pullPolicy }}
  args:
    - --csi-address={{ .socket }}
    - --timeout=120s
    - --leader-election={{ and .Values.controller.leaderElection (not .nodeDeployment) }}
    - --leader-election-namespace=$(NAMESPACE)
  env:
    - name: NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
  {{- with .Values.sidecars.resizer.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ .volume }}
      mountPath: {{ dir .socket }}
{{- end -}}
