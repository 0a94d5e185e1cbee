package report

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// series is one line of the chart.
type series struct {
	Name   string
	Color  string
	Dashed bool
	Points []point
}

type point struct {
	X int           // concurrency
	Y time.Duration // latency
}

// latencySVG draws latency against concurrency, both on log scales, by hand
// (no dependency): one line per series, grid, ticks, legend.
func latencySVG(title, subtitle string, ss []series) string {
	const (
		W, H                 = 820, 480
		left, right, top, bo = 78, 220, 62, 58
	)
	pw, ph := float64(W-left-right), float64(H-top-bo)

	minX, maxX := math.MaxInt, 0
	minY, maxY := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, p := range s.Points {
			minX, maxX = min(minX, p.X), max(maxX, p.X)
			if ms := ms(p.Y); ms > 0 {
				minY, maxY = math.Min(minY, ms), math.Max(maxY, ms)
			}
		}
	}
	if maxX == 0 || math.IsInf(minY, 1) {
		return emptySVG(title)
	}
	lx0, lx1 := math.Log2(float64(minX)), math.Log2(float64(maxX))
	if lx1-lx0 < 1e-9 {
		lx0, lx1 = lx0-1, lx1+1
	}
	ly0, ly1 := math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
	if ly1-ly0 < 1 {
		ly1 = ly0 + 1
	}
	px := func(c int) float64 { return float64(left) + (math.Log2(float64(c))-lx0)/(lx1-lx0)*pw }
	py := func(d time.Duration) float64 {
		return float64(top) + ph - (math.Log10(ms(d))-ly0)/(ly1-ly0)*ph
	}

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`, W, H, W, H)
	w(`<rect width="%d" height="%d" fill="#ffffff"/>`, W, H)
	w(`<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`, left, esc(title))
	w(`<text x="%d" y="44" font-size="12" fill="#555">%s</text>`, left, esc(subtitle))

	// Horizontal grid: 1, 2, 5 x 10^k ms.
	for k := ly0; k <= ly1; k++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, k)
			lv := math.Log10(v)
			if lv < ly0-1e-9 || lv > ly1+1e-9 {
				continue
			}
			y := float64(top) + ph - (lv-ly0)/(ly1-ly0)*ph
			stroke, dash := "#e3e3e3", ` stroke-dasharray="2 3"`
			if m == 1 {
				stroke, dash = "#c8c8c8", ""
			}
			w(`<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"%s/>`, left, y, float64(left)+pw, y, stroke, dash)
			w(`<text x="%d" y="%.1f" text-anchor="end" fill="#333">%s</text>`, left-8, y+4, fmtMS(v))
		}
	}
	// Vertical ticks at the measured levels.
	levels := map[int]bool{}
	for _, s := range ss {
		for _, p := range s.Points {
			levels[p.X] = true
		}
	}
	for c := range levels {
		x := px(c)
		w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eeeeee"/>`, x, top, x, float64(top)+ph)
		w(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%d</text>`, x, float64(top)+ph+18, c)
	}
	w(`<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`, left, top, pw, ph)
	w(`<text x="%.1f" y="%d" text-anchor="middle">concurrent callers (log scale)</text>`, float64(left)+pw/2, H-14)
	w(`<text transform="translate(20 %.1f) rotate(-90)" text-anchor="middle">latency (log scale)</text>`, float64(top)+ph/2)

	for _, s := range ss {
		if len(s.Points) == 0 {
			continue
		}
		var pts []string
		for _, p := range s.Points {
			if p.Y > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y)))
			}
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="7 4"`
		}
		w(`<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`, s.Color, dash, strings.Join(pts, " "))
		for _, p := range s.Points {
			if p.Y <= 0 {
				continue
			}
			fill := s.Color
			if s.Dashed {
				fill = "#ffffff"
			}
			w(`<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s" stroke-width="1.5"><title>%s, c=%d: %s</title></circle>`,
				px(p.X), py(p.Y), fill, s.Color, esc(s.Name), p.X, FmtDur(p.Y))
		}
	}
	// Legend.
	lx, ly := float64(left)+pw+18, float64(top)+8
	for i, s := range ss {
		y := ly + float64(i)*22
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="7 4"`
		}
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`, lx, y, lx+28, y, s.Color, dash)
		w(`<text x="%.1f" y="%.1f">%s</text>`, lx+36, y+4, esc(s.Name))
	}
	w(`</svg>`)
	return b.String()
}

func emptySVG(title string) string {
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="400" height="60"><text x="10" y="30">%s: no data</text></svg>`+"\n", esc(title))
}

func esc(s string) string { return html.EscapeString(s) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMS(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%gs", v/1000)
	case v >= 1:
		return fmt.Sprintf("%gms", v)
	default:
		return fmt.Sprintf("%gµs", v*1000)
	}
}
