package mailgen

// The read-only vocabulary the generator draws from. Non-ASCII names and phrases are there on
// purpose: they exercise RFC 2047 headers, charsets and UTF-8 search.

type person struct {
	name, email string
}

// owner is the mailbox's owner: the sender of everything in Sent.
var owner = person{"Sam Taylor", "sam@example.org"}

var people = []person{
	{"Alice Martin", "alice@example.org"},
	{"Bob Chen", "bob.chen@example.net"},
	{"Chloé Dubois", "chloe@exemple.fr"},
	{"张伟", "zhang.wei@example.cn"},
	{"Dmitri Ivanov", "dmitri@example.ru"},
	{"Eve Müller", "eve.mueller@example.de"},
	{"Fatima Zahra", "fatima@example.ma"},
	{"George O'Brien", "george@example.ie"},
	{"Hana Sato", "hana.sato@example.jp"},
	{"Ivan Petrov", "ivan@example.ru"},
	{"Jürgen Groß", "juergen@example.de"},
	{"Kofi Mensah", "kofi@example.com"},
	{"Lucía Fernández", "lucia@example.es"},
	{"", "noreply@notifications.example.com"},
	{"Build Bot", "ci@build.example.com"},
}

var words = []string{
	"sync", "mailbox", "server", "invoice", "meeting", "report", "quarterly", "review",
	"schedule", "budget", "project", "deadline", "update", "status", "heartbeat", "cleanup",
	"release", "deploy", "database", "index", "customer", "ticket", "urgent", "follow-up",
	"notes", "draft", "agenda", "travel", "receipt", "order", "the", "a", "we", "will", "to",
	"and", "of", "for", "with", "on", "next", "week", "please", "check", "attached", "numbers",
	"team", "thanks", "before", "after", "Friday", "Monday", "plan", "call", "migration",
	"backup", "latency", "contract", "draft", "proposal", "feedback", "approved", "pending",
}

var greetings = []string{"Hi", "Hello", "Dear", "Hey", "Good morning"}

var closings = []string{"Best regards,", "Thanks,", "Cheers,", "Kind regards,", "See you,"}

var subjectTails = []string{" — 进度", " (résumé)", " ✅", " — Überprüfung", " 会议纪要", ""}

// Text in legacy charsets; each list only uses characters its charset can encode.
var (
	frenchLines = []string{
		"Merci pour votre réponse rapide.",
		"Voici le résumé de la réunion de jeudi.",
		"Le budget prévu a été dépassé de 5 %, il faut en reparler.",
		"Pourriez-vous vérifier la facture ci-jointe avant vendredi ?",
		"À bientôt, et bonne journée !",
		"La synchronisation complète a pris moins de deux secondes.",
	}
	windows1252Lines = []string{
		"The “final” invoice is 1 250 € – please confirm.",
		"We’re on track… mostly.",
		"Price list attached — see the ‘Q3’ tab.",
	}
	russianLines = []string{
		"Привет! Отчёт готов.",
		"Встреча перенесена на пятницу.",
		"Спасибо за быстрый ответ.",
		"Счёт во вложении, проверьте, пожалуйста.",
	}
	japaneseLines = []string{
		"お世話になっております。",
		"会議の資料を添付いたします。",
		"来週の予定を確認してください。",
		"よろしくお願いいたします。",
	}
)

var mailers = []string{
	"Mozilla Thunderbird 128.3.1", "Apple Mail (2.3774)", "Microsoft Outlook 16.0",
	"Roundcube Webmail/1.6.9", "mutt/2.2.13",
}

var zones = []int{0, 2 * 3600, -7 * 3600, 8 * 3600, 9 * 3600, 3 * 3600, -5 * 3600, 5*3600 + 1800}
