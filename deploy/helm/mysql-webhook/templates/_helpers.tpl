{{/*
The chart renders the objects of deploy/ (the kustomize install) rather than copies of them:
kustomize/base, kustomize/cert-manager, kustomize/policies and kustomize/policy-reports are
symlinks to deploy/base, deploy/overlays/cert-manager, deploy/components/policies and
deploy/components/policy-reports, read with .Files.Get and parsed with
fromYaml, then given the release's names, namespace, labels and values. `helm package` stores the
files the links point to, so a packaged chart needs no checkout. Why: see the chart's README.
*/}}

{{/* The name every object of deploy/ carries, and the namespace deploy/base installs into. */}}
{{- define "mysql-webhook.kustomizeName" -}}mysql-webhook{{- end }}
{{- define "mysql-webhook.kustomizeNamespace" -}}
{{- (.Files.Get "kustomize/base/kustomization.yaml" | fromYaml).namespace }}
{{- end }}

{{/* The release's prefix for every object: the release name when it already says mysql-webhook. */}}
{{- define "mysql-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* A name of deploy/ ("mysql-webhook", "mysql-webhook-ca", …) with the release's prefix. Args: (list $ name). */}}
{{- define "mysql-webhook.rename" -}}
{{- $root := index . 0 }}
{{- regexReplaceAll (printf "^%s" (include "mysql-webhook.kustomizeName" $root)) (index . 1) (include "mysql-webhook.fullname" $root) }}
{{- end }}

{{/* The labels Helm adds beside the ones of deploy/base's kustomization. */}}
{{- define "mysql-webhook.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Added to every selector of deploy/base, so that two releases never select each other's pods. */}}
{{- define "mysql-webhook.selectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Every object's metadata.labels: deploy/base's `labels` pairs, then Helm's. */}}
{{- define "mysql-webhook.labels" -}}
{{- $labels := dict }}
{{- range (.Files.Get "kustomize/base/kustomization.yaml" | fromYaml).labels }}
{{- $labels = merge $labels .pairs }}
{{- end }}
{{- toYaml (merge (include "mysql-webhook.helmLabels" . | fromYaml) $labels) }}
{{- end }}

{{/*
One object of a multi-document file of deploy/, as YAML. Args: (list $ file kind [name]).
Fails when the file has no such object, so a change of deploy/ the chart can't follow stops
`helm install` instead of installing less.
*/}}
{{- define "mysql-webhook.read" -}}
{{- $root := index . 0 }}{{ $file := index . 1 }}{{ $kind := index . 2 }}
{{- $name := "" }}{{ if gt (len .) 3 }}{{ $name = index . 3 }}{{ end }}
{{- $found := list }}
{{- range splitList "\n---\n" ($root.Files.Get $file) }}
{{- $doc := fromYaml . }}
{{- if and (eq ($doc.kind | default "") $kind) (or (not $name) (eq $doc.metadata.name $name)) }}
{{- $found = append $found $doc }}
{{- end }}
{{- end }}
{{- if ne (len $found) 1 }}
{{- fail (printf "the chart expects one %s %s in %s, found %d" $kind $name $file (len $found)) }}
{{- end }}
{{- toYaml (first $found) }}
{{- end }}

{{/*
Gives an object of deploy/ the release's name, namespace and labels (in place).
Args: (dict "root" $ "object" $obj "namespaced" bool).
*/}}
{{- define "mysql-webhook.metadata" -}}
{{- $meta := .object.metadata }}
{{- $_ := set $meta "name" (include "mysql-webhook.rename" (list .root $meta.name)) }}
{{- if .namespaced }}
{{- $_ := set $meta "namespace" .root.Release.Namespace }}
{{- else }}
{{- $_ := unset $meta "namespace" }}
{{- end }}
{{- $_ := set $meta "labels" (merge (include "mysql-webhook.labels" .root | fromYaml) ($meta.labels | default dict)) }}
{{- end }}

{{/* Adds the release's selector labels to a label map (in place). */}}
{{- define "mysql-webhook.select" -}}
{{- $_ := merge (index . 1) (include "mysql-webhook.selectorLabels" (index . 0) | fromYaml) }}
{{- end }}

{{/* The Secret the pods mount: the user's, or the one the chart or cert-manager fills. */}}
{{- define "mysql-webhook.tlsSecret" -}}
{{- .Values.certificates.existingSecret | default (printf "%s-tls" (include "mysql-webhook.fullname" .)) }}
{{- end }}

{{/* The names the serving certificate covers: those of `mysql-webhook certs`. */}}
{{- define "mysql-webhook.dnsNames" -}}
{{- $svc := include "mysql-webhook.fullname" . }}{{ $ns := .Release.Namespace }}
{{- toYaml (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns)) }}
{{- end }}

{{/* A YAML document of an object built from deploy/. */}}
{{- define "mysql-webhook.document" -}}
{{- printf "---\n%s\n" (toYaml .) }}
{{- end }}
