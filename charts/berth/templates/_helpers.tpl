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

{{/*
berth's image. There is no public registry to default to: the chart refuses
to render until image.repository names where the operator pushed the image
built from the repository's Dockerfile.
*/}}
{{- define "berth.image" -}}
{{- $repository := required "image.repository is not set: build berth's image from the repository's Dockerfile, push it to a registry your nodes can pull from, and set image.repository (and image.tag) to it" .Values.image.repository -}}
{{- include "berth.imageRef" (dict "repository" $repository "tag" (.Values.image.tag | default .Chart.AppVersion) "digest" .Values.image.digest) -}}
{{- end -}}

{{/* Where a node plugin's CSI socket lives: the same path on the host and in the pod. */}}
{{- define "berth.pluginDir" -}}
{{ .Values.kubeletDir }}/plugins/{{ .driver }}
{{- end -}}

{{/*
A node plugin's pod body shared by the NFS node DaemonSet and the local one:
dict Values, driver (CSI driver name), mode (node or local), local (bool).
*/}}
{{/*
A node plugin's ports: its pods use the host's network, so the NFS node
plugin and the local driver on one node must not share a port.
*/}}
{{- define "berth.nodePorts" -}}
{{- if .local -}}
{{- dict "health" .Values.localPools.healthPort "metrics" .Values.localPools.metricsPort | toJson -}}
{{- else -}}
{{- dict "health" .Values.sidecars.livenessProbe.port "metrics" .Values.metrics.port | toJson -}}
{{- end -}}
{{- end -}}

{{/* The pod settings of a node plugin: the host's network (see berth.nodeContainer), DNS that still resolves cluster names. */}}
{{- define "berth.nodePodNetwork" -}}
# A kernel NFS mount's transport belongs to the network namespace that made
# it: made in a pod's own namespace, every NFS volume on the node would hang
# once the plugin pod is replaced. On the host's network the mounts outlive it.
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end -}}

{{- define "berth.nodeContainer" -}}
{{- $pluginDir := include "berth.pluginDir" . -}}
{{- $ports := include "berth.nodePorts" . | fromJson -}}
- name: berth
  image: {{ include "berth.image" .root }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - --mode={{ .mode }}
    - --endpoint=unix://{{ $pluginDir }}/csi.sock
    - --nodeid=$(KUBE_NODE_NAME)
    - --drivername={{ .driver }}
    - --kubelet-dir={{ .Values.kubeletDir }}
    - --max-volumes-per-node={{ .Values.node.maxVolumesPerNode }}
    {{- if .local }}
    - --pool-dir={{ .Values.localPools.hostPath }}
    - --thin-overprovision={{ .Values.localPools.thinOverprovision }}
    {{- if and .Values.snapshots.enabled .Values.snapshots.snapshotMetadata }}
    - --snapshot-metadata
    {{- end }}
    {{- else }}
    # Exports holding block images are mounted below the plugin directory, which the host shares.
    - --nfs-mount-dir={{ $pluginDir }}/exports
    {{- with .Values.node.mountedAtDirs }}
    - --mounted-at-dirs={{ join "," . }}
    {{- end }}
    {{- end }}
    - --log-level={{ .Values.logLevel }}
    - --self-register={{ .Values.node.selfRegistration }}
    - --kubelet-registration-path={{ $pluginDir }}/csi.sock
    {{- if .Values.metrics.enabled }}
    # Every address of the node (host network), as csi-driver-nfs serves its metrics; berth-ctl status reads 127.0.0.1.
    - --metrics-address=:{{ $ports.metrics }}
    {{- end }}
  env:
    - name: KUBE_NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
  securityContext:
    privileged: true
  ports:
    - name: healthz
      containerPort: {{ $ports.health }}
      protocol: TCP
    {{- if .Values.metrics.enabled }}
    - name: metrics
      containerPort: {{ $ports.metrics }}
      protocol: TCP
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: healthz
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 5
  {{- with (ternary .Values.localPools.resources .Values.node.resources .local) }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: kubelet-dir
      mountPath: {{ .Values.kubeletDir }}
      mountPropagation: Bidirectional
    - name: dev
      mountPath: /dev
    {{- if .local }}
    - name: pool
      mountPath: {{ .Values.localPools.hostPath }}
      mountPropagation: Bidirectional
    {{- else }}
    {{- range $i, $dir := .Values.node.mountedAtDirs }}
    - name: mounted-at-{{ $i }}
      mountPath: {{ $dir }}
      mountPropagation: HostToContainer
    {{- end }}
    {{- end }}
{{- end -}}

{{/* The node plugin's sidecars: livenessprobe, and node-driver-registrar when berth does not register itself. */}}
{{- define "berth.nodeSidecars" -}}
{{ include "berth.livenessProbeContainer" (dict "Values" .Values "socket" "/csi/csi.sock" "volume" "plugin-dir" "port" (include "berth.nodePorts" . | fromJson).health) }}
{{- if not .Values.node.selfRegistration }}
- name: node-driver-registrar
  image: {{ include "berth.imageRef" .Values.sidecars.nodeDriverRegistrar }}
  imagePullPolicy: {{ .Values.sidecars.nodeDriverRegistrar.pullPolicy }}
  args:
    - --csi-address=/csi/csi.sock
    - --kubelet-registration-path={{ include "berth.pluginDir" . }}/csi.sock
  {{- with .Values.sidecars.nodeDriverRegistrar.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: plugin-dir
      mountPath: /csi
    - name: registration-dir
      mountPath: /registration
{{- end }}
{{- end -}}

{{/* The node plugin's host directories. */}}
{{- define "berth.nodeVolumes" -}}
- name: kubelet-dir
  hostPath:
    path: {{ .Values.kubeletDir }}
    type: Directory
- name: plugin-dir
  hostPath:
    path: {{ include "berth.pluginDir" . }}
    type: DirectoryOrCreate
- name: registration-dir
  hostPath:
    path: {{ .Values.kubeletDir }}/plugins_registry
    type: Directory
- name: dev
  hostPath:
    path: /dev
    type: Directory
{{- if .local }}
- name: pool
  hostPath:
    path: {{ .Values.localPools.hostPath }}
    type: DirectoryOrCreate
{{- else }}
{{- range $i, $dir := .Values.node.mountedAtDirs }}
- name: mounted-at-{{ $i }}
  hostPath:
    path: {{ $dir }}
    type: Directory
{{- end }}
{{- end }}
{{- end -}}

{{- define "berth.livenessProbeContainer" -}}
- name: liveness-probe
  image: {{ include "berth.imageRef" .Values.sidecars.livenessProbe }}
  imagePullPolicy: {{ .Values.sidecars.livenessProbe.pullPolicy }}
  args:
    - --csi-address={{ .socket }}
    - --health-port={{ .port | default .Values.sidecars.livenessProbe.port }}
  {{- with .securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.sidecars.livenessProbe.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ .volume }}
      mountPath: {{ dir .socket }}
{{- end -}}

{{/* A sidecar container: dict Values, name, image (a sidecars.* entry), args, socket, volume, env (names). */}}
{{- define "berth.sidecar" -}}
- name: {{ .name }}
  image: {{ include "berth.imageRef" .image }}
  imagePullPolicy: {{ .image.pullPolicy }}
  args:
    - --csi-address={{ .socket }}
    {{- range .args }}
    - {{ . }}
    {{- end }}
  {{- with .env }}
  env:
    {{- range . }}
    - name: {{ . }}
      valueFrom:
        fieldRef:
          fieldPath: {{ get (dict "NODE_NAME" "spec.nodeName" "NAMESPACE" "metadata.namespace" "POD_NAME" "metadata.name") . }}
    {{- end }}
  {{- end }}
  {{- with .securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .image.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: {{ .volume }}
      mountPath: {{ dir .socket }}
{{- end -}}

{{/* The flags of leader-elected central sidecars. */}}
{{- define "berth.leaderElection" -}}
{{- list (printf "--leader-election=%t" .Values.controller.leaderElection) "--leader-election-namespace=$(NAMESPACE)" | toJson -}}
{{- end -}}

{{/* The csi-snapshotter's cluster rules (external-snapshotter deploy/kubernetes/csi-snapshotter/rbac-csi-snapshotter.yaml), and the provisioner's for restores. */}}
{{- define "berth.snapshotRules" -}}
- apiGroups: [snapshot.storage.k8s.io]
  resources: [volumesnapshots]
  verbs: [get, list, watch, update]
- apiGroups: [snapshot.storage.k8s.io]
  resources: [volumesnapshotclasses]
  verbs: [get, list, watch]
- apiGroups: [snapshot.storage.k8s.io]
  resources: [volumesnapshotcontents]
  verbs: [get, list, watch, update, patch]
- apiGroups: [snapshot.storage.k8s.io]
  resources: [volumesnapshotcontents/status]
  verbs: [update, patch]
{{- if .Values.snapshots.groupSnapshots }}
- apiGroups: [groupsnapshot.storage.k8s.io]
  resources: [volumegroupsnapshotclasses]
  verbs: [get, list, watch]
- apiGroups: [groupsnapshot.storage.k8s.io]
  resources: [volumegroupsnapshotcontents]
  verbs: [get, list, watch, update, patch]
- apiGroups: [groupsnapshot.storage.k8s.io]
  resources: [volumegroupsnapshotcontents/status]
  verbs: [update, patch]
{{- end }}
{{- end -}}

{{/* The csi-snapshotter's flags besides leader election. */}}
{{- define "berth.snapshotterArgs" -}}
{{- $args := list "--timeout=120s" "--extra-create-metadata" -}}
{{- if .Values.snapshots.groupSnapshots }}{{ $args = append $args "--feature-gates=CSIVolumeGroupSnapshot=true" }}{{ end -}}
{{- $args | toJson -}}
{{- end -}}

