# tracker-gitops-e2e/prometheus:2.42 — Debian's prometheus 2.42 on an empty
# base (no registry here), laid out like the upstream prom/prometheus image:
# /bin/prometheus, /etc/prometheus/prometheus.yml, data in /prometheus, runs
# as nobody (65534). A static busybox provides sh and wget for healthchecks.
# Built by tests/e2e/images.sh, which stages rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/bin:/usr/bin
RUN mkdir -p /prometheus /tmp \
 && chmod 1777 /tmp \
 && chown -R 65534:65534 /prometheus /etc/prometheus
USER 65534
EXPOSE 9090
# No VOLUME (upstream declares /prometheus): anonymous volumes would leak in
# tests; mount a named volume there to keep data.
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.console.libraries=/usr/share/prometheus/console_libraries", "--web.console.templates=/usr/share/prometheus/consoles"]
